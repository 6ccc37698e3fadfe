"""scripts/gpu_check.sh's Python side (pada.slm.gpu_check): fails fast without a GPU; its dry run on a CPU."""

import json

import pytest

from pada.slm.gpu_check import main


def test_without_a_gpu_it_stops_at_once_with_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    assert main([]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no CUDA GPU visible" in err and "--device cpu --train 8 --test 8" in err


def test_cpu_dry_run_fine_tunes_evaluates_and_reports(tiny_slm_dir, tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert main(["--device", "cpu", "--model", str(tiny_slm_dir), "--task", "arc_challenge", "--train", "4",
                 "--test", "3", "--dtype", "float32", "--eval-batch-size", "2", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu" and figures["dtype"] == "float32"
    assert figures["train_examples"] == 4 and figures["eval_questions"] == 3 and figures["eval_batch_size"] == 2
    assert figures["finetune_tokens_per_s"] > 0 and figures["eval_samples_per_s"] > 0
    assert 0 <= figures["test_accuracy"] <= 1 and figures["peak_gpu_memory_finetune_gib"] is None
    assert "finetune_tokens_per_s:" in capsys.readouterr().out


def test_a_training_size_beyond_the_pool_is_one_line(tiny_slm_dir, capsys):
    assert main(["--device", "cpu", "--model", str(tiny_slm_dir), "--task", "arc_challenge",
                 "--train", "100000", "--test", "2"]) == 1
    assert "--train 100000: more than the training pool" in capsys.readouterr().err

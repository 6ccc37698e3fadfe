"""`python -m pada finetune` / `eval` end to end on the tiny model and a few real ARC examples."""

import json

import pytest

from pada.cli import main


def test_finetune_then_eval_with_the_adapter(tiny_slm_dir, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    code = main(["finetune", "--task", "arc_challenge", "--train-size", "4", "--epochs", "1", "--batch-size", "4",
                 "--model", str(tiny_slm_dir), "--dtype", "float32", "--out", str(adapter)])
    assert code == 0
    assert (adapter / "adapter_config.json").is_file()
    summary = json.loads((adapter / "training_summary.json").read_text())
    assert summary["n_examples"] == 4 and summary["config"]["batch_size"] == 4

    preds = tmp_path / "preds.jsonl"
    # no --model: the base model is read from the adapter's training_summary.json
    code = main(["eval", "--task", "arc_challenge", "--split", "validation", "--limit", "3", "--adapter", str(adapter),
                 "--batch-size", "2", "--dtype", "float32", "--out", str(preds)])
    assert code == 0
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 3 and all({"id", "prediction", "extracted", "correct"} <= set(row) for row in rows)
    assert "validation: accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["eval", "--task", "no_such_task"], "no_such_task"),
    (["eval", "--task", "arc_challenge", "--adapter", "/nonexistent/adapter"], "adapter"),
    (["finetune", "--task", "arc_challenge", "--train-size", "4", "--out", "x", "--dtype", "int3"], "dtype"),
])
def test_bad_input_is_one_line_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and message in err[-1]

"""Bad input gets one clear line, and nothing is created before it is valid (issue 10 §4, §3 --out).

Every case runs the CLI (`pada.cli.main`) as a user would and checks: exit code 2, exactly
one stderr line starting with `error:` that names the file, line and field (or the flag),
no traceback, and no run directory left under the runs root.
"""

import json

import pytest

from pada.cli import COMMANDS, main
from pada.tasks import clear_cache


@pytest.fixture(autouse=True)
def fresh_tasks():
    clear_cache()
    yield
    clear_cache()


def cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(result, *fragments):
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def custom_file(tmp_path, n_train=6, name="mine.jsonl", **extra):
    rows = [{"id": f"t{i}", "input": f"{i}+1?", "answer": str(i + 1), "split": "train"} for i in range(n_train)]
    rows += [{"id": f"v{i}", "input": f"{i}+2?", "answer": str(i + 2), "split": "validation"} for i in range(2)]
    rows += [{"id": f"x{i}", "input": f"{i}+3?", "answer": str(i + 3), "split": "test"} for i in range(2)]
    return write_jsonl(tmp_path / name, rows)


def run_config(tmp_path, text: str, custom=None):
    custom = custom or custom_file(tmp_path)
    head = f"task: custom\ntask_options: {{path: '{custom}', scorer: number}}\n"
    path = tmp_path / "run.yaml"
    path.write_text(head + text, encoding="utf-8")
    return path


def start_run(capsys, tmp_path, config):
    runs = tmp_path / "runs"
    result = cli(capsys, "run", "--config", config, "--runs-root", runs)
    assert not runs.exists() or not any(runs.iterdir()), "a run directory was created for a bad config"
    return result


# ----------------------------------------------------------------------------- 1. help texts

@pytest.mark.parametrize("command", COMMANDS)  # every command the CLI registers, so a new one is covered
def test_every_help_text_renders(capsys, command):
    code, out, err = cli(capsys, command, "--help")
    assert code == 0 and "usage:" in out and not err


# ----------------------------------------------------------------------------- 2, 7, 8, 9, 12, 13: run configs

def test_config_not_utf8(capsys, tmp_path):
    config = run_config(tmp_path, "seed: 0\n# caf\xe9\n")
    config.write_bytes(config.read_bytes().replace("café".encode(), b"caf\xe9"))
    assert_one_line_error(start_run(capsys, tmp_path, config), "run.yaml line 4", "not UTF-8")


def test_config_nested_too_deep(capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("task: " + "[" * 100_000 + "\n")
    assert_one_line_error(start_run(capsys, tmp_path, config), "run.yaml", "nested too deeply")


def test_unknown_task_leaves_no_run(capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("seed: 0\ntask: mmlu\n")
    assert_one_line_error(start_run(capsys, tmp_path, config), "run.yaml line 2: task", "unknown task 'mmlu'")


def test_missing_model_is_caught_before_the_run(capsys, tmp_path):
    config = run_config(tmp_path, "data:\n  train_size: 4\nslm:\n  model: no-such-model\n")
    assert_one_line_error(start_run(capsys, tmp_path, config), "run.yaml line 6: slm.model", "'no-such-model'",
                          "smollm2-135m")


@pytest.mark.parametrize("section, field, value", [
    ("data", "train_size", -5), ("data", "train_size", 0), ("data", "val_size", -1), ("data", "val_size", 0),
    ("data", "test_size", 0), ("slm", "eval_batch_size", 0),
])
def test_bad_sizes(capsys, tmp_path, section, field, value):
    config = run_config(tmp_path, f"{section}:\n  {field}: {value}\n")
    assert_one_line_error(start_run(capsys, tmp_path, config), f"run.yaml line 4: {section}.{field}",
                          "must be >= 1", f"got {value}")


def test_train_size_above_the_pool_names_the_pool(capsys, tmp_path):
    config = run_config(tmp_path, "data:\n  train_size: 1000\n")
    assert_one_line_error(start_run(capsys, tmp_path, config), "run.yaml line 4: data.train_size",
                          "1000 is more than the training pool", "(6 examples)", "at most 6")


def test_custom_file_with_only_test_rows_cannot_train(capsys, tmp_path):
    custom = write_jsonl(tmp_path / "tests_only.jsonl",
                         [{"id": str(i), "input": "q", "answer": "4", "split": "test"} for i in range(4)])
    config = run_config(tmp_path, "seed: 0\n", custom=custom)
    assert_one_line_error(start_run(capsys, tmp_path, config), "data.train_size", "(0 examples)",
                          "tests_only.jsonl has only validation/test lines")


def test_custom_file_with_only_test_rows_can_still_be_scored(capsys, tmp_path):
    custom = write_jsonl(tmp_path / "tests_only.jsonl",
                         [{"id": str(i), "input": "q", "answer": "4", "split": "test"} for i in range(4)])
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": "0", "prediction": "4"}])
    code, out, err = cli(capsys, "score", "--task", f"custom:{custom}", "--scorer", "number",
                         "--predictions", predictions)
    assert code == 0 and json.loads(out.splitlines()[-1])["correct"] == 1, err


def test_config_data_dir_that_does_not_exist(capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"task: gsm8k\ndata_dir: {tmp_path / 'nowhere'}\n")
    assert_one_line_error(start_run(capsys, tmp_path, config), "run.yaml line 2", "data_dir",
                          str(tmp_path / "nowhere"), "does not exist")


@pytest.mark.parametrize("argv", [
    ["tasks"],
    ["score", "--task", "gsm8k", "--predictions", "p.jsonl"],
    ["eval", "--task", "gsm8k"],
    ["finetune", "--task", "gsm8k", "--train-size", "4", "--out", "adapter"],
])
def test_data_dir_flag_that_does_not_exist(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "p.jsonl", [{"id": "test-0", "prediction": "4"}])
    result = cli(capsys, *argv, "--data-dir", tmp_path / "nowhere")
    assert_one_line_error(result, f"--data-dir {tmp_path / 'nowhere'}: does not exist")
    assert not (tmp_path / "adapter").exists()


def test_finetune_checks_model_and_pool_before_training(capsys, tmp_path):
    custom = custom_file(tmp_path)
    out = tmp_path / "adapter"
    assert_one_line_error(cli(capsys, "finetune", "--task", f"custom:{custom}", "--train-size", "2", "--out", out,
                              "--model", "no-such-model"), "--model", "'no-such-model'")
    assert_one_line_error(cli(capsys, "finetune", "--task", f"custom:{custom}", "--train-size", "50", "--out", out),
                          "--train-size 50", "training pool", "(6 examples)")
    assert_one_line_error(cli(capsys, "finetune", "--task", f"custom:{custom}", "--train-size", "-5", "--out", out),
                          "--train-size", "'-5'")
    assert not out.exists()


# ----------------------------------------------------------------------------- 3, 4, 5, 10, 11: score

def score(capsys, tmp_path, predictions, *extra, custom=None):
    custom = custom or custom_file(tmp_path)
    return cli(capsys, "score", "--task", f"custom:{custom}", "--scorer", "number", "--predictions", predictions,
               *extra)


def test_predictions_nested_too_deep(capsys, tmp_path):
    predictions = tmp_path / "p.jsonl"
    predictions.write_text('{"id": "t0", "prediction": "1"}\n{"id": "t1", "prediction": '
                           + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert_one_line_error(score(capsys, tmp_path, predictions), "p.jsonl line 2", "nested too deeply")


def test_custom_task_nested_too_deep(capsys, tmp_path):
    custom = tmp_path / "mine.jsonl"
    custom.write_text('{"input": "q", "answer": "1"}\n{"input": "q", "answer": '
                      + "[" * 100_000 + "]" * 100_000 + "}\n")
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": "custom-0", "prediction": "1"}])
    assert_one_line_error(score(capsys, tmp_path, predictions, custom=custom), "mine.jsonl line 2",
                          "nested too deeply")


def test_custom_task_nan_answer(capsys, tmp_path):
    custom = tmp_path / "mine.jsonl"
    custom.write_text('{"input": "q", "answer": "1"}\n{"input": "q", "answer": NaN}\n')
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": "custom-0", "prediction": "1"}])
    assert_one_line_error(score(capsys, tmp_path, predictions, custom=custom), "mine.jsonl line 2",
                          "field 'answer'", "NaN")


def test_lone_surrogate_is_reported_and_the_line_still_scored(capsys, tmp_path):
    predictions = tmp_path / "p.jsonl"
    predictions.write_text('{"id": "t0", "prediction": "\\ud800 1"}\n{"id": "t1", "prediction": "2"}\n'
                           '{"id": "t2", "prediction": "7"}\n')
    out = tmp_path / "scored.jsonl"
    code, stdout, err = score(capsys, tmp_path, predictions, "--out", out)
    assert code == 0, err
    assert json.loads(stdout.splitlines()[-1]) == {"task": "custom", "n": 3, "correct": 2,
                                                   "accuracy": pytest.approx(2 / 3)}
    warning, = err.strip().splitlines()
    assert warning.startswith("warning: ") and "p.jsonl line 1" in warning and "field 'prediction'" in warning
    assert "\\ud800" in warning
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["t0", "t1", "t2"]


def test_duplicate_ids_are_refused(capsys, tmp_path):
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": "t0", "prediction": "1"}, {"id": "t1", "prediction": "2"},
                                                     {"id": "t0", "prediction": "1"}])
    assert_one_line_error(score(capsys, tmp_path, predictions), "p.jsonl line 3", "field 'id'",
                          "duplicate id 't0'", "first on line 1")


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf"])
def test_bad_timeout(capsys, tmp_path, timeout):
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": "t0", "prediction": "1"}])
    assert_one_line_error(score(capsys, tmp_path, predictions, "--timeout", timeout), "--timeout", repr(timeout))


# ----------------------------------------------------------------------------- 6 and §3: --out

@pytest.fixture
def predictions(tmp_path):
    return write_jsonl(tmp_path / "p.jsonl", [{"id": "t0", "prediction": "1"}])


def test_score_out_is_a_directory(capsys, tmp_path, predictions):
    assert_one_line_error(score(capsys, tmp_path, predictions, "--out", tmp_path), f"--out {tmp_path}",
                          "is a directory")


def test_score_out_under_proc(capsys, tmp_path, predictions):
    assert_one_line_error(score(capsys, tmp_path, predictions, "--out", "/proc/scored.jsonl"),
                          "--out /proc/scored.jsonl", "pseudo-filesystem")


def test_score_out_is_the_input_even_with_force(capsys, tmp_path, predictions):
    before = predictions.read_text()
    for extra in ([], ["--force"]):
        assert_one_line_error(score(capsys, tmp_path, predictions, "--out", predictions, *extra),
                              f"--out {predictions}", "--predictions file itself")
    assert predictions.read_text() == before


def test_score_out_existing_file_needs_force(capsys, tmp_path, predictions):
    out = tmp_path / "scored.jsonl"
    out.write_text("earlier results\n")
    assert_one_line_error(score(capsys, tmp_path, predictions, "--out", out), f"--out {out}", "--force")
    assert out.read_text() == "earlier results\n"
    code, _, err = score(capsys, tmp_path, predictions, "--out", out, "--force")
    assert code == 0 and json.loads(out.read_text())["id"] == "t0", err


def test_eval_out_checked_before_loading_anything(capsys, tmp_path):
    custom = custom_file(tmp_path)
    for out, fragment in ((tmp_path, "is a directory"), ("/proc/x.jsonl", "pseudo-filesystem")):
        assert_one_line_error(cli(capsys, "eval", "--task", f"custom:{custom}", "--out", out), "--out", fragment)


def test_eval_bad_numbers_are_flag_errors(capsys, tmp_path):
    assert_one_line_error(cli(capsys, "eval", "--task", "gsm8k", "--batch-size", "0"), "--batch-size", "'0'")


@pytest.fixture
def finished_run(tmp_path):
    from pada.store import RunStore

    store = RunStore.create({"task": "custom", "method": "vanilla"}, runs_root=tmp_path / "runs", run_id="r1")
    store.save_training_set(1, [{"id": "t0", "messages": [{"role": "user", "content": "1+1?"},
                                                          {"role": "assistant", "content": "2"}]}])
    store.save_metrics(1, "validation", {"accuracy": 0.5})
    return store


def test_export_refuses_non_empty_dir_unless_force(capsys, tmp_path, finished_run):
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["export", "r1", "--iteration", "1", "--out", out, "--runs-root", tmp_path / "runs"]
    assert_one_line_error(cli(capsys, *argv), f"--out {out}", "not empty", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    code, _, err = cli(capsys, *argv, "--force")
    assert code == 0 and (out / "train.jsonl").is_file() and (out / "keep.txt").read_text() == "mine", err


def test_export_refuses_the_run_directory_itself(capsys, tmp_path, finished_run):
    for out in (finished_run.path, finished_run.path / "exported"):
        assert_one_line_error(cli(capsys, "export", "r1", "--iteration", "1", "--out", out, "--force",
                                  "--runs-root", tmp_path / "runs"), "--out", "overlaps the run directory")


def test_export_out_is_a_file(capsys, tmp_path, finished_run):
    out = tmp_path / "file.txt"
    out.write_text("x")
    assert_one_line_error(cli(capsys, "export", "r1", "--iteration", "1", "--out", out,
                              "--runs-root", tmp_path / "runs"), f"--out {out}", "is a file")


# ----------------------------------------------------------------------------- unexpected errors

def test_unexpected_error_is_one_line_with_a_saved_traceback(capsys, monkeypatch):
    from pathlib import Path

    from pada.commands import runs

    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(runs, "run", broken)
    monkeypatch.delenv("PADA_DEBUG", raising=False)
    code, _, err = cli(capsys, "runs")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "unexpected RuntimeError: boom second line" in err and "--debug" in err
    saved = Path(err.split("traceback in ")[1].split(";")[0])
    assert "RuntimeError: boom" in saved.read_text()
    saved.unlink()
    with pytest.raises(RuntimeError):
        main(["--debug", "runs"])
    monkeypatch.setenv("PADA_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["runs"])

"""`sweep`: one YAML file expands into a comparison per (task, train size), each written like `compare` writes
one, plus an index; bad input is one line naming the file, line and field."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from conftest import tiny_run_config
from pada.cli import main
from pada.commands.sweep import load_sweep
from pada.config import ConfigError
from pada.store import list_runs

REPO = Path(__file__).resolve().parents[1]


def test_the_example_sweep_expands_to_the_paper_grid():
    sweep = load_sweep(REPO / "configs" / "sweep-example.yaml")
    keys = [cell.key for cell in sweep.cells]
    assert keys == [f"{task}-{size}" for task in ("arc_challenge", "gsm8k", "hellaswag", "squad")
                    for size in (300, 600, 1000)] + ["humaneval-300"]
    base = yaml.safe_load((REPO / "configs" / "paper" / "arc_challenge.yaml").read_text())
    for cell in sweep.cells:
        assert len(cell.plan) == 4 * 3  # methods x seeds
        assert {(p.variant.method, p.seed) for p in cell.plan} == {
            (m, s) for m in ("pada", "vanilla", "auggpt", "llms_as_instructors") for s in (0, 1, 2)}
        for planned in cell.plan:
            config = planned.config
            assert (config.task, config.data.train_size) == (cell.task, cell.train_size)
            assert (config.slm.model, config.judge.model, config.iterations) == (
                base["slm"]["model"], base["judge"]["model"], base["iterations"])
    assert sweep.node_runs_dir is None
    assert sweep.cells[0].plan[0].name == "[arc_challenge n=300 pada seed 0]"


def test_the_sweep_help_renders(capsys):
    with pytest.raises(SystemExit) as done:
        main(["sweep", "--help"])
    assert done.value.code == 0 and "--executor {local,ray}" in capsys.readouterr().out


def _write(tmp_path: Path, spec: dict | str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
    return path


def test_inline_base_task_overrides_seed_lists_and_ablations(tmp_path, tiny_slm_dir):
    spec = {"base": tiny_run_config(tiny_slm_dir, seed=4), "methods": ["vanilla", "pada"], "seeds": [7, 9],
            "ablations": True, "train_sizes": [8, 16], "node_runs_dir": "/local/runs",
            "tasks": ["arc_challenge", {"task": "gsm8k", "train_sizes": [12], "overrides": {"iterations": 3,
                                                                                          "slm": {"eval_batch_size": 4}}}]}
    sweep = load_sweep(_write(tmp_path, spec))
    assert [cell.key for cell in sweep.cells] == ["arc_challenge-8", "arc_challenge-16", "gsm8k-12"]
    assert sweep.node_runs_dir == "/local/runs"
    first, _, gsm8k = sweep.cells
    assert [p.variant.label for p in first.plan[:5]] == [
        "vanilla", "pada", "pada/no_patterns", "pada/no_train_errors", "pada/no_qc"]
    assert [p.seed for p in first.plan] == [7] * 5 + [9] * 5
    assert all(p.config.iterations == 2 and p.config.slm.eval_batch_size == 16 for p in first.plan)
    assert all(p.config.iterations == 3 and p.config.slm.eval_batch_size == 4 and p.config.slm.train.epochs == 1
               for p in gsm8k.plan)  # the override merges into the base's sections, it does not replace them


BAD = [
    ("base: x.yaml\ntasks: [squad]\ntrain_sizes: [300]\nmethods: [pada]\nmethod: pada\n",
     "line 5: method: unknown field"),
    ("base: {task: squad}\ntasks: [squad]\ntrain_sizes: [300, -1]\nmethods: [pada]\n",
     "line 3: train_sizes[1]: expected a whole number >= 1, got -1"),
    ("base: {task: squad}\ntasks: [squad]\ntrain_sizes: [300]\nmethods:\n  - pada\n  - vanila\n",
     "line 6: methods[1]: unknown method 'vanila'"),
    ("base: {task: squad}\ntasks:\n  - squad\n  - task: gsm8k\n    sizes: [3]\ntrain_sizes: [300]\nmethods: [pada]\n",
     "line 5: tasks[1].sizes: unknown field"),
    ("base: {task: squad}\ntasks:\n  - task: gsm8k\n    overrides:\n      slm: {modle: x}\ntrain_sizes: [300]\n"
     "methods: [pada]\n", "line 5: unknown field 'slm.modle'"),
    ("base: {task: squad, iterations: 0}\ntasks: [squad]\ntrain_sizes: [3]\nmethods: [pada]\n",
     "line 1: iterations: must be >= 1"),
    ("base: {task: squad}\ntasks: [squad, squad]\ntrain_sizes: [3]\nmethods: [pada]\n",
     "line 2: tasks: squad-3 appears twice"),
    ("base: {task: squad}\ntasks: [squad]\ntrain_sizes: [3]\nmethods: [pada]\nseeds: 0\n",
     "line 5: seeds: expected a number of seeds >= 1"),
    ("base: {task: squad}\ntasks: [squad]\nmethods: [pada]\n", "sweep.yaml: train_sizes: missing"),
    ("base: {task: squad\ntasks: [squad]\n", "not valid YAML"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[message for _, message in BAD])
def test_bad_sweep_input_is_one_line_naming_file_line_and_field(tmp_path, capsys, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_sweep(path)
    assert message in str(caught.value) and str(caught.value).startswith(str(path))
    assert main(["sweep", "--config", str(path), "--runs-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "runs").exists()  # nothing created


def test_a_train_size_the_task_lacks_names_the_sweep_line_before_any_run(tmp_path, tiny_slm_dir, capsys):
    spec = {"base": tiny_run_config(tiny_slm_dir), "tasks": ["arc_challenge"], "train_sizes": [8, 10 ** 6],
            "methods": ["vanilla"]}
    path = _write(tmp_path, spec)
    line = path.read_text().splitlines().index("- 1000000") + 1
    assert main(["sweep", "--config", str(path), "--runs-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"{path} line {line}: data.train_size: 1000000" in err and not (tmp_path / "runs").exists()


def test_a_sweep_writes_each_comparison_and_an_index(tmp_path, tiny_slm_dir, monkeypatch, capsys):
    from test_comparison import _FakePipeline

    monkeypatch.setattr("pada.pipeline.Pipeline", _FakePipeline)
    monkeypatch.setattr(_FakePipeline, "runs", 0)  # its class-wide count is test_comparison's; restored after
    spec = {"base": tiny_run_config(tiny_slm_dir), "tasks": ["arc_challenge"], "train_sizes": [8, 16],
            "methods": ["vanilla", "pada"], "seeds": 2}
    path, root, out = _write(tmp_path, spec), tmp_path / "runs", tmp_path / "out"
    assert main(["sweep", "--config", str(path), "--runs-root", str(root), "--out", str(out)]) == 0
    assert len(list_runs(root)) == 8 and _FakePipeline.runs == 8  # 2 sizes x 2 methods x 2 seeds
    printed = capsys.readouterr().out
    assert "[arc_challenge n=16 pada seed 1] run " in printed
    for key in ("arc_challenge-8", "arc_challenge-16"):
        table = (out / key / "comparison.md").read_text()
        assert "| vanilla | 2 |" in table and "| pada | 2 |" in table
    with (out / "index.csv").open() as handle:
        index = list(csv.DictReader(handle))
    assert [(row["comparison"], row["method"]) for row in index] == [
        ("arc_challenge-8", "vanilla"), ("arc_challenge-8", "pada"),
        ("arc_challenge-16", "vanilla"), ("arc_challenge-16", "pada")]
    assert {row["train_size"] for row in index} == {"8", "16"} and all(row["seeds"] == "0 1" for row in index)
    assert "- arc_challenge, 16 training examples: [arc_challenge-16/comparison.md]" in (out / "index.md").read_text()

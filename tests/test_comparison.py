"""`compare`: every method on one config, a Table-1-style table, finished runs reused (tiny SLM, scripted stand-in)."""

from __future__ import annotations

import csv
import shutil

import yaml

from conftest import tiny_run_config
from pada.cli import main
from pada.comparison import ComparisonRow, compare_runs, markdown_table, selected, write_comparison
from pada.config import from_dict
from pada.store import list_runs


def test_compare_runs_each_method_reuses_finished_runs_and_writes_the_table(tmp_path, tiny_slm_dir, pipeline_run,
                                                                            capsys):
    from doubles.pada_script import install

    install()
    source_root, run_id = pipeline_run
    root = tmp_path / "runs"
    shutil.copytree(source_root / run_id, root / run_id)  # the same config as method pada: reused, not rerun
    config = from_dict(tiny_run_config(tiny_slm_dir))

    rows = compare_runs(config, ["vanilla", "pada"], runs_root=root)
    by_method = {method: [row for row in rows if row.method == method] for method in ("vanilla", "pada")}
    assert [row.iteration for row in by_method["vanilla"]] == [1]
    assert [row.iteration for row in by_method["pada"]] == [1, 2]
    assert {row.run_id for row in by_method["pada"]} == {run_id}
    assert by_method["vanilla"][0].synthetic == 0 and by_method["vanilla"][0].tokens == 0
    assert by_method["pada"][0].synthetic == 0 and by_method["pada"][1].synthetic > 0
    assert all(row.metric == "accuracy" and 0.0 <= row.value <= 1.0 for row in rows)
    assert len(list_runs(root)) == 2

    markdown, csv_path = write_comparison(rows, tmp_path / "table")
    table = markdown.read_text()
    assert "| method | it 1 | it 2 | selected by validation | synthetic samples | LLM tokens | cost $ |" in table
    assert "| vanilla |" in table and "| pada |" in table
    with csv_path.open() as handle:
        assert len(list(csv.DictReader(handle))) == 3

    # the command, again: both runs are found by their config, nothing new is started
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_run_config(tiny_slm_dir)))
    assert main(["compare", "--config", str(config_file), "--methods", "vanilla,pada", "--runs-root", str(root),
                 "--out", str(tmp_path / "cli")]) == 0
    assert "reusing run" in capsys.readouterr().out
    assert len(list_runs(root)) == 2
    assert (tmp_path / "cli" / "comparison.md").read_text() == table


def _row(iteration: int, test: float, validation: float | None) -> ComparisonRow:
    return ComparisonRow("pada", "run", iteration, "accuracy", test, validation, 0, 0.0, 0)


def test_the_reported_iteration_is_chosen_by_validation_never_by_test():
    rows = [_row(1, test=0.40, validation=0.30), _row(2, test=0.25, validation=0.35), _row(3, test=0.50, validation=0.20)]
    assert selected(rows).iteration == 2  # best validation, although iterations 1 and 3 test better
    assert "| pada | 40.0 | 25.0 | 50.0 | 25.0 (it 2) |" in markdown_table(rows)


def test_a_validation_tie_picks_the_earliest_iteration():
    assert selected([_row(1, 0.1, 0.3), _row(2, 0.9, 0.3)]).iteration == 1

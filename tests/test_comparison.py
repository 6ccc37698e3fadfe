"""`compare`: every method (and PaDA's ablations) on one config over seeds, a Table-1-style table with paired
bootstrap intervals, finished runs reused (tiny SLM and scripted stand-in; a fake pipeline for the expansion)."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import yaml

from conftest import tiny_run_config
from pada.cli import main
from pada import comparison
from pada.comparison import (
    ComparisonRow, compare_runs, markdown_table, selected, selected_item_scores, summarise, write_comparison,
)
from pada.config import from_dict
from pada.records import Prediction
from pada.stats import bootstrap_means, mean_std, paired_bootstrap, paired_by_id
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

    markdown, csv_path = write_comparison(rows, tmp_path / "table", summarise(rows, selected_item_scores(rows, root)))
    table = markdown.read_text()
    assert ("| method | seeds | selected iteration | test accuracy | std | validation accuracy | Δ vs vanilla | "
            "95% CI of Δ | CI items | synthetic samples | LLM tokens | cost $ |") in table
    assert "| method | it 1 | it 2 |" in table
    assert "| vanilla | 1 | 1 |" in table and "| pada | 1 |" in table
    assert "paired percentile bootstrap over test items (10,000 resamples" in table
    with csv_path.open() as handle:
        assert len(list(csv.DictReader(handle))) == 3
    with (tmp_path / "table" / "comparison_summary.csv").open() as handle:
        summary = {row["method"]: row for row in csv.DictReader(handle)}
    assert summary["pada"]["ci_items"] == "12"  # the whole tiny test set, matched by id
    assert float(summary["pada"]["ci_low"]) <= float(summary["pada"]["difference_vs_vanilla"]) <= float(
        summary["pada"]["ci_high"])

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
    table = markdown_table(rows)
    assert "| pada | 1 | 2 | 25.0 | – | 35.0 |" in table  # the summary reports iteration 2's test metric
    assert "| pada | 40.0 | 25.0 | 50.0 |" in table  # every iteration in the second table


def test_a_validation_tie_picks_the_earliest_iteration():
    assert selected([_row(1, 0.1, 0.3), _row(2, 0.9, 0.3)]).iteration == 1


# ------------------------------------------------------------------ the paired bootstrap


def test_a_constant_difference_has_a_single_point_interval():
    rng = np.random.default_rng(1)
    baseline = rng.random(200)
    interval = paired_bootstrap(baseline + 0.05, baseline)
    assert interval.difference == pytest.approx(0.05)
    assert interval.low == pytest.approx(0.05) and interval.high == pytest.approx(0.05)
    assert (interval.items, interval.seeds, interval.resamples) == (200, 1, 10_000)


def _slow_bootstrap(method, baseline, resamples, seed):
    """The textbook loop: draw n item indices, average the differences there, 2.5/97.5 percentiles."""
    rng = np.random.default_rng(seed)
    diffs = [m - b for m, b in zip(method, baseline)]
    n, means = len(diffs), []
    for _ in range(resamples):
        idx = rng.integers(0, n, size=(1, n))[0]
        means.append(sum(diffs[i] for i in idx) / n)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def test_the_vectorised_bootstrap_matches_a_direct_loop_with_the_same_seed(monkeypatch):
    rng = np.random.default_rng(7)
    method, baseline = (rng.random(40) < 0.6).astype(float), (rng.random(40) < 0.45).astype(float)
    monkeypatch.setattr("pada.stats._CHUNK_CELLS", 40)  # one resample per chunk: the same draws as the loop
    interval = paired_bootstrap(method, baseline, resamples=500, seed=3)
    assert (interval.low, interval.high) == pytest.approx(_slow_bootstrap(method, baseline, 500, 3))
    assert interval.difference == pytest.approx((method - baseline).mean())


def test_a_hand_checkable_interval():
    # one item of two differs by 1, the other by 0: a resample's mean is 0, 1/2 or 1 with chances 1/4, 1/2, 1/4
    means = bootstrap_means(np.array([1.0, 0.0]), resamples=20_000, seed=0)
    assert set(np.unique(means)) == {0.0, 0.5, 1.0}
    assert np.mean(means == 0.5) == pytest.approx(0.5, abs=0.02)
    interval = paired_bootstrap([1.0, 1.0], [0.0, 1.0])
    assert (interval.difference, interval.low, interval.high) == (0.5, 0.0, 1.0)


def test_seeds_pair_by_seed_and_item_and_resample_items_with_all_their_seeds():
    # seed 0: +1 on item a only; seed 1: +1 on item b only: every item's seed-averaged difference is 1/2
    method = {0: {"a": 1.0, "b": 0.0, "c": 1.0}, 1: {"a": 0.0, "b": 1.0, "c": 1.0}, 2: {"a": 1.0}}
    baseline = {0: {"a": 0.0, "b": 0.0, "c": 0.5}, 1: {"a": 0.0, "b": 0.0, "c": 0.5}}
    interval = paired_by_id(method, baseline)  # seed 2 has no baseline; item c is matched at both seeds
    assert (interval.seeds, interval.items) == (2, 3)
    assert interval.difference == pytest.approx(0.5) and (interval.low, interval.high) == pytest.approx((0.5, 0.5))
    assert paired_by_id({3: {"a": 1.0}}, baseline) is None


def test_mean_and_std_across_seeds():
    assert mean_std([0.3]) == (0.3, None)
    mean, std = mean_std([0.2, 0.4, 0.6])
    assert mean == pytest.approx(0.4) and std == pytest.approx(0.2)  # sample std, ddof=1


def _run(method: str, seed: int, tests: list[float], validations: list[float]) -> list[ComparisonRow]:
    return [ComparisonRow(method, f"{method}-{seed}", i + 1, "accuracy", t, v, 100, 0.01, 10 * i, seed)
            for i, (t, v) in enumerate(zip(tests, validations))]


def test_summary_selects_per_seed_then_aggregates_and_pairs_with_vanilla():
    rows = (_run("vanilla", 0, [0.30], [0.3]) + _run("vanilla", 1, [0.34], [0.3])
            + _run("pada", 0, [0.30, 0.40, 0.20], [0.1, 0.5, 0.4]) + _run("pada", 1, [0.30, 0.50, 0.44], [0.1, 0.2, 0.6]))
    by_method = {s.method: s for s in summarise(rows)}
    pada = by_method["pada"]
    assert pada.iterations == [2, 3] and pada.seeds == [0, 1]  # per seed, by validation
    assert pada.test_mean == pytest.approx(0.42) and pada.test_std == pytest.approx(np.std([0.40, 0.44], ddof=1))
    assert pada.difference == pytest.approx(((0.40 - 0.30) + (0.44 - 0.34)) / 2)  # paired by seed
    assert pada.ci_low is None  # no per-item scores given: no interval
    assert pada.synthetic == pytest.approx(15) and pada.tokens == 100
    table = markdown_table(rows, list(by_method.values()))
    assert "| pada | 2 | 2, 3 | 42.0 | 2.8 | 55.0 | +10.0 | – |" in table
    assert "| vanilla | 2 | 1, 1 | 32.0 | 2.8 | 30.0 | (baseline) | – |" in table
    assert "2 seeds (0, 1)" in table and "(mean over seeds)" in table

    items = {("vanilla", 0): {"q1": 0.0, "q2": 1.0}, ("vanilla", 1): {"q1": 0.0, "q2": 1.0},
             ("pada", 0): {"q1": 1.0, "q2": 1.0}, ("pada", 1): {"q1": 1.0, "q2": 1.0}}
    pada = {s.method: s for s in summarise(rows, items)}["pada"]
    # per item (seed-averaged): q1 +1, q2 0, as in the hand-checked case: Δ 1/2, interval [0, 1]
    assert (pada.difference, pada.ci_low, pada.ci_high, pada.items) == (0.5, 0.0, 1.0, 2)
    assert "| +50.0 | [+0.0, +100.0] | 2 |" in markdown_table(rows, [pada])


# ------------------------------------------------------------------ method x ablation x seed


class _FakePipeline:
    """Stands in for the loop: writes a made-up metric per iteration and per-item test predictions."""

    runs = 0

    def __init__(self, store, config):
        self.store, self.config = store, config

    def approve_pending_review(self):
        pass

    def run(self):
        type(self).runs += 1
        iterations = 1 if self.config.method == "vanilla" else self.config.iterations
        shift = ["vanilla", "auggpt", "llms_as_instructors", "pada"].index(self.config.method)
        shift += 2 * sum(vars(self.config.ablations).values())
        for i in range(1, iterations + 1):
            correct = [(k * (shift + 1) + self.config.seed + i) % 3 == 0 or k < shift + i for k in range(9)]
            self.store.save_predictions(i, "test", [Prediction(id=f"t{k}", split="test", prediction="", correct=c)
                                                    for k, c in enumerate(correct)])
            self.store.save_metrics(i, "test", {"accuracy": sum(correct) / 9})
            self.store.save_metrics(i, "validation", {"accuracy": (i + self.config.seed + shift) % 3 / 3})
        self.store.set_status("completed")
        return "completed"


def test_methods_ablations_and_seeds_expand_to_distinct_runs_that_are_reused(tmp_path, tiny_slm_dir, monkeypatch):
    monkeypatch.setattr("pada.pipeline.Pipeline", _FakePipeline)
    root = tmp_path / "runs"
    config = from_dict(tiny_run_config(tiny_slm_dir, seed=5))

    rows = compare_runs(config, ["vanilla", "pada"], runs_root=root, ablations=True, seeds=2)
    stored = {(run.config["method"], tuple(sorted(k for k, v in run.config["ablations"].items() if v)),
               run.config["seed"]) for run in list_runs(root)}
    assert len(list_runs(root)) == 10 and len(stored) == 10  # (vanilla, pada, 3 ablations) x seeds 5 and 6
    assert ("pada", ("no_qc",), 6) in stored and ("pada", (), 5) in stored and ("vanilla", (), 6) in stored
    labels = list(dict.fromkeys(row.method for row in rows))
    assert labels == ["vanilla", "pada", "pada/no_patterns", "pada/no_train_errors", "pada/no_qc"]
    assert {row.seed for row in rows} == {5, 6}
    assert _FakePipeline.runs == 10

    again = compare_runs(config, ["vanilla", "pada"], runs_root=root, ablations=True, seeds=2)
    assert _FakePipeline.runs == 10 and len(list_runs(root)) == 10  # every run reused
    assert again == rows

    summaries = summarise(rows, selected_item_scores(rows, root))
    assert [s.method for s in summaries] == labels
    assert all(s.seeds == [5, 6] and s.items == 9 for s in summaries)
    vanilla = summaries[0]
    assert (vanilla.difference, vanilla.ci_low, vanilla.ci_high) == (0.0, 0.0, 0.0)
    for s in summaries[1:]:  # the interval's centre is the paired per-item difference of the selected iterations
        picks = {seed: selected([r for r in rows if r.method == s.method and r.seed == seed]) for seed in (5, 6)}
        base = {seed: next(r for r in rows if r.method == "vanilla" and r.seed == seed) for seed in (5, 6)}
        assert s.difference == pytest.approx(np.mean([picks[k].value - base[k].value for k in (5, 6)]))
        assert s.ci_low <= s.difference <= s.ci_high

    markdown, _ = write_comparison(rows, tmp_path / "table", summaries)
    print(markdown.read_text())
    with (tmp_path / "table" / "comparison.csv").open() as handle:
        written = list(csv.DictReader(handle))
    assert list(written[0]) == comparison.ROW_COLUMNS
    assert sum(row["selected"] == "True" for row in written) == 10  # one per variant and seed
    with (tmp_path / "table" / "comparison_summary.csv").open() as handle:
        assert list(next(csv.DictReader(handle))) == comparison.SUMMARY_COLUMNS


def test_variant_configs_differ_only_in_method_ablation_and_seed(tiny_slm_dir):
    config = from_dict(tiny_run_config(tiny_slm_dir))
    base = config.to_dict()
    for variant in comparison.variants(["pada", "vanilla", "pada"], ablations=True):
        made = comparison.variant_config(config, variant, 3).to_dict()
        changed = {key for key in base if made[key] != base[key]}
        assert changed <= {"method", "seed", "ablations"} and made["seed"] == 3
        assert sum(made["ablations"].values()) == (1 if variant.ablation else 0)
    assert comparison.seed_list(config, 3) == [0, 1, 2]
    assert len(comparison.variants(["pada", "vanilla", "pada"], ablations=True)) == 5

"""Run several methods on one config and tabulate them like the paper's Table 1."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pada.config import RunConfig, from_dict
from pada.store import RunStore


@dataclass
class ComparisonRow:
    method: str
    run_id: str
    iteration: int
    metric: str
    value: float  # test-set metric of this iteration
    validation: float | None  # validation metric of this iteration: what selects the reported iteration
    tokens: int  # LLM tokens the whole run used
    cost_usd: float
    synthetic: int  # synthetic samples in this iteration's training set


def compare_runs(config: RunConfig, methods: list[str], runs_root=None, reuse: bool = True) -> list[ComparisonRow]:
    """Run `config` once per method (same seed and budget) and collect the test metric per iteration.

    With `reuse`, a method whose exact config already has a run under `runs_root` is not run again:
    a completed run is read as it is, a stopped or killed one is resumed (so an interrupted compare,
    or a `pada run` of the same config, is picked up instead of paid for twice).
    """
    from pada.pipeline import Pipeline, start_run

    rows: list[ComparisonRow] = []
    for method in methods:
        method_config = from_dict(dict(config.to_dict(), method=method), source=f"compare ({method})")
        store = reusable_run(method_config, runs_root) if reuse else None
        if store is None:
            store = start_run(method_config, runs_root=runs_root)
            print(f"[{method}] run {store.run_id}", flush=True)
        else:
            print(f"[{method}] reusing run {store.run_id} ({store.state().status})", flush=True)
        if store.state().status != "completed":
            pipeline = Pipeline(store, method_config)
            pipeline.approve_pending_review()
            pipeline.run()
        rows += rows_for_run(store, method)
    return rows


def _canonical(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def reusable_run(config: RunConfig, runs_root=None) -> RunStore | None:
    """The newest run with exactly `config`: a completed one first, else one that can be resumed
    (stopped, failed, killed, awaiting review); None when there is none or it is running now."""
    from pada.runs import effective_status
    from pada.store import list_runs

    wanted = _canonical(config.to_dict())
    same = [run for run in list_runs(runs_root) if run.config and _canonical(run.config) == wanted]
    for run in sorted(same, key=lambda run: run.status != "completed"):  # stable: newest first within each
        if effective_status(run.status, run.pid) != "running":
            return RunStore.open(run.path)
    return None


def rows_for_run(store: RunStore, method: str) -> list[ComparisonRow]:
    from pada.runs import headline_metric, usage_totals

    metric = headline_metric(store.config(), {row.name for row in store.metrics()})
    usage = usage_totals(store)
    first = store.training_set_size(1)
    validation = {row.iteration: row.value for row in store.metrics(split="validation", name=metric)}
    return [ComparisonRow(method, store.run_id, row.iteration, metric, row.value, validation.get(row.iteration),
                          int(usage["tokens"]), usage["cost_usd"], store.training_set_size(row.iteration) - first)
            for row in store.metrics(split="test", name=metric)]


def selected(rows: list[ComparisonRow]) -> ComparisonRow:
    """The iteration a user would ship: the best validation metric (earliest on a tie), never the best test."""
    return max(rows, key=lambda row: (row.validation if row.validation is not None else float("-inf"), -row.iteration))


def write_comparison(rows: list[ComparisonRow], out_dir: str | Path) -> tuple[Path, Path]:
    """Write `comparison.csv` (one row per method and iteration) and `comparison.md` (methods x iterations)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "comparison.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ComparisonRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    md_path = out / "comparison.md"
    md_path.write_text(markdown_table(rows), encoding="utf-8")
    return md_path, csv_path


def markdown_table(rows: list[ComparisonRow]) -> str:
    iterations = sorted({row.iteration for row in rows})
    methods = list(dict.fromkeys(row.method for row in rows))
    metric = rows[0].metric if rows else "metric"
    header = ["method", *[f"it {i}" for i in iterations], "selected by validation", "synthetic samples",
              "LLM tokens", "cost $"]
    lines = [f"Test {metric} (%) per method and iteration", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        mine = {row.iteration: row for row in rows if row.method == method}
        cells = [f"{100 * mine[i].value:.1f}" if i in mine else "" for i in iterations]
        chosen = selected(list(mine.values()))
        any_row = next(iter(mine.values()))
        last = mine[max(mine)]
        lines.append("| " + " | ".join([method, *cells, f"{100 * chosen.value:.1f} (it {chosen.iteration})",
                                         str(last.synthetic), str(any_row.tokens), f"{any_row.cost_usd:.4f}"]) + " |")
    lines.append("")
    lines.append("selected by validation: the test metric of the iteration with the best validation metric "
                 "(the test set never picks the iteration).")
    lines.append("synthetic samples: accepted synthetic samples in the last iteration's training set. "
                 "Vanilla fine-tuning never changes its training set, so it runs one iteration.")
    return "\n".join(lines) + "\n"

"""What the dashboard pages show: the run store's records shaped as pandas DataFrames.

Pages (`pages/*.py`) stay thin: they cache these helpers' results and render
them. Nothing here imports Streamlit, so the helpers are testable on their
own and usable from scripts. Nothing here holds SQL either: every read goes
through `RunStore` (a read-only one: `readonly=True` never migrates or writes
and works on a read-only disk; what changes a run opens `store.writable()`).

One row per failure, point, sample, version, ..., plus the few joins and
filters the store does not offer (text search over failures, originals of
synthetic samples). Starting and stopping run processes is
`pada.dashboard.processes`.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd

from pada.records import ClusteringResult, Failure, Strategy
from pada.runs import effective_status, headline_metric, usage_totals  # noqa: F401  (the pages use them from here)
from pada.store import RunStore, RunSummary, StoredSample, StrategyVersion, list_runs, runs_root

COMPARISONS_DIR = "comparisons"  # under the runs root: `python -m pada compare` output folders
COMPARISON_COLUMNS = ("method", "iteration", "metric", "value", "tokens", "cost_usd")
ACTIVE_STATUSES = ("created", "running")


# ------------------------------------------------------------------ runs


def app_runs_root() -> Path:
    """The dashboard's runs root: $PADA_RUNS_DIR, else `runs/` in the current directory."""
    return runs_root()


def run_config(store: RunStore) -> dict[str, Any]:
    """The stored config as a dict."""
    return store.config()


def stage_progress(store: RunStore, iteration: int | None, stage: str | None) -> tuple[int, int | None] | None:
    """(done, total) of the stage the run is in, if the loop reported any."""
    if iteration is None or not stage:
        return None
    for row in store.progress(iteration):
        if row.stage == stage:
            return row.done, row.total
    return None


def progress_text(progress: tuple[int, int | None] | None) -> str:
    if progress is None:
        return ""
    done, total = progress
    return f"{done}/{total}" if total else f"{done} LLM calls"  # LLM stages: the total is open


def latest_metrics(store: RunStore, metric: str) -> dict[str, float]:
    """The headline metric of the newest iteration that has it, per split."""
    latest: dict[str, float] = {}
    for row in store.metrics(name=metric):  # ordered by iteration: later ones overwrite
        latest[row.split] = row.value
    return latest


RUN_COLUMNS = ["run", "task", "method", "status", "iteration", "stage", "metric", "validation", "test", "tokens",
               "cost_usd", "created", "error"]


def run_row(summary: RunSummary) -> dict[str, Any]:
    """One line of the runs table: where the run is and what it achieved and cost."""
    config = summary.config or {}
    iterations = config.get("iterations")
    row: dict[str, Any] = {
        "run": summary.run_id, "task": summary.task, "method": config.get("method"),
        "status": effective_status(summary.status, summary.pid, summary.path),
        "iteration": f"{summary.iteration or 0} / {iterations or '?'}", "stage": summary.stage or "",
        "metric": None, "validation": None, "test": None, "tokens": 0, "cost_usd": 0.0,
        "created": summary.created_at[:19].replace("T", " "), "error": summary.error,
    }
    if summary.status == "unreadable":
        return row
    with RunStore(summary.path, readonly=True) as store:
        metric = headline_metric(config, {m.name for m in store.metrics()})
        latest = latest_metrics(store, metric)
        totals = usage_totals(store)
        progress = progress_text(stage_progress(store, summary.iteration, summary.stage))
    row.update(metric=metric, validation=latest.get("validation"), test=latest.get("test"),
               tokens=totals["tokens"], cost_usd=totals["cost_usd"])
    if progress:
        row["stage"] += f" ({progress})"
    return row


def runs_frame(root: Path | None = None) -> pd.DataFrame:
    """Every run under the runs root, newest first, one `run_row` each."""
    return pd.DataFrame([run_row(summary) for summary in list_runs(root)], columns=RUN_COLUMNS)


def events_frame(store: RunStore, limit: int = 30) -> pd.DataFrame:
    events = store.events(limit)
    return pd.DataFrame(
        [{"at": e.at[:19].replace("T", " "), "level": e.level, "iteration": e.iteration, "stage": e.stage,
          "message": e.message} for e in events],
        columns=["at", "level", "iteration", "stage", "message"],
    )


def analysed_iterations(store: RunStore) -> list[int]:
    """Iterations whose validation failures were stored (the errors and clusters pages' choices)."""
    return [it for it in store.iterations() if store.failure_count(it) > 0 or store.clustering(it) is not None]


# -------------------------------------------------------------- failures


def failure_record(row) -> dict[str, Any]:
    failure: Failure = row.failure
    analysis = row.analysis
    return {
        "failure_id": failure.id, "input": failure.input, "ground_truth": failure.ground_truth,
        "prediction": failure.prediction, "extracted": failure.extracted,
        "error_cause": analysis.error_cause if analysis else None,
        "scenario": analysis.scenario_category if analysis else None,
        "cluster": row.cluster_id, "category": row.category_name,
    }


FAILURE_COLUMNS = ["failure_id", "input", "ground_truth", "prediction", "extracted", "error_cause", "scenario",
                   "cluster", "category"]
SEARCHED_COLUMNS = ("failure_id", "input", "ground_truth", "prediction", "error_cause", "scenario", "category")


def failures_frame(store: RunStore, iteration: int, split: str = "validation") -> pd.DataFrame:
    """Every failure of (iteration, split) with its analysis, cluster and pattern name.

    Validation sets are small (the paper: 500), so the page loads them all once
    (cached) and filters and pages in memory; text search needs that anyway.
    """
    rows = store.failure_rows(iteration, split, limit=None)
    frame = pd.DataFrame([failure_record(r) for r in rows], columns=FAILURE_COLUMNS)
    frame["cluster"] = frame["cluster"].astype("Int64")
    return frame


def filter_failures(frame: pd.DataFrame, cluster: int | None = None, scenario: str | None = None,
                    search: str = "", category: str | None = None) -> pd.DataFrame:
    """Rows of one cluster, scenario category (the LLM's) and pattern name whose text contains `search`.

    Search is case-insensitive over the failure's text, the analysis and the pattern name.
    """
    mask = pd.Series(True, index=frame.index)
    if cluster is not None:
        mask &= (frame["cluster"] == cluster).fillna(False)
    if scenario:
        mask &= frame["scenario"] == scenario
    if category:
        mask &= frame["category"] == category
    needle = search.strip().lower()
    if needle:
        hit = pd.Series(False, index=frame.index)
        for column in SEARCHED_COLUMNS:
            hit |= frame[column].fillna("").astype(str).str.lower().str.contains(needle, regex=False)
        mask &= hit
    return frame[mask]


def page_slice(frame: pd.DataFrame, page: int, page_size: int) -> pd.DataFrame:
    """Rows of 1-based page `page`."""
    start = (max(page, 1) - 1) * page_size
    return frame.iloc[start:start + page_size]


def n_pages(n_rows: int, page_size: int) -> int:
    return max(1, -(-n_rows // page_size))


def shorten(text: str | None, limit: int = 160) -> str:
    """One line of at most `limit` characters, for table cells."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


# -------------------------------------------------------------- clusters


def cluster_frame(store: RunStore, iteration: int) -> pd.DataFrame:
    """One row per clustered failure: 2-D position, cluster, pattern name, error cause and scenario."""
    points = store.cluster_points(iteration)
    details = {row["failure_id"]: row for row in map(failure_record, store.failure_rows(iteration, limit=None))}
    rows = []
    for point in points:
        detail = details.get(point.failure_id, {})
        rows.append({
            "failure_id": point.failure_id, "x": point.x, "y": point.y, "cluster": point.cluster_id,
            "category": detail.get("category") or f"Cluster {point.cluster_id}",
            "error_cause": detail.get("error_cause") or "", "scenario": detail.get("scenario") or "",
        })
    return pd.DataFrame(rows, columns=["failure_id", "x", "y", "cluster", "category", "error_cause", "scenario"])


def cluster_label(cluster_id: int, category: str | None) -> str:
    """The legend entry of a cluster: `3 · Unit confusion`."""
    return f"{cluster_id} · {category}" if category and category != f"Cluster {cluster_id}" else f"Cluster {cluster_id}"


def elbow_frame(clustering: ClusteringResult) -> pd.DataFrame:
    """(K, inertia) per K tried, with the chosen K flagged."""
    rows = [{"k": int(k), "inertia": float(inertia), "chosen": int(k) == clustering.k}
            for k, inertia in clustering.inertia_curve]
    return pd.DataFrame(rows, columns=["k", "inertia", "chosen"])


def cluster_sizes_frame(store: RunStore, iteration: int) -> pd.DataFrame:
    names = {p.cluster_id: p.category_name for p in store.patterns(iteration)}
    rows = [{"cluster": c, "category": names.get(c, ""), "failures": n}
            for c, n in store.cluster_sizes(iteration).items()]
    return pd.DataFrame(rows, columns=["cluster", "category", "failures"])


# ------------------------------------------------------------ strategies


def strategy_iterations(store: RunStore) -> list[int]:
    """Iterations that have named patterns or drafted strategies, ascending."""
    return [it for it in store.iterations() if store.patterns(it) or store.current_strategies(it)]


def parse_key_elements(text: str) -> list[str]:
    """One key element per line; list bullets and blank lines are dropped."""
    elements = []
    for line in text.splitlines():
        item = line.strip().lstrip("-*•").strip()
        if item:
            elements.append(item)
    return elements


def edited_strategy(current: Strategy, strategy_name: str, generation_approach: str,
                    key_elements: str | list[str], category_name: str | None = None) -> Strategy:
    """`current` with a person's edits applied; a person's version is a valid strategy (`ok`, no raw reply)."""
    elements = parse_key_elements(key_elements) if isinstance(key_elements, str) else list(key_elements)
    name, approach = strategy_name.strip(), generation_approach.strip()
    if not name:
        raise ValueError("the strategy needs a name")
    if not approach:
        raise ValueError("the strategy needs a generation approach (what the generator should do)")
    return current.model_copy(update={
        "strategy_name": name, "generation_approach": approach, "key_elements": elements,
        "category_name": (category_name or current.category_name).strip(), "ok": True, "raw": None,
    })


def written_strategy(strategy_name: str, generation_approach: str, key_elements: str | list[str],
                     category_name: str = "") -> Strategy:
    """A person's own strategy from the page's fields, validated like an edit. The category (what the model
    fails on, which the generator is told) defaults to the name; the store gives it its id."""
    blank = Strategy(cluster_id=-1, category_name="", strategy_name="", generation_approach="", hand_written=True)
    return edited_strategy(blank, strategy_name, generation_approach, key_elements,
                           category_name.strip() or strategy_name)


HAND_WRITTEN = "✍ hand-written"  # the mark every view puts on a strategy a person wrote


def strategy_label(name: str | None, hand_written: bool) -> str | None:
    """A strategy name as the pages show it: a hand-written one carries the mark."""
    return f"{name} ({HAND_WRITTEN})" if name and hand_written else name


def written_strategy_names(store: RunStore, iteration: int) -> list[str]:
    """The names of the iteration's hand-written strategies, which its samples carry as their strategy."""
    return [s.strategy_name for s in store.current_strategies(iteration) if s.hand_written]


def strategy_changed(current: Strategy, proposed: Strategy) -> bool:
    fields = ("strategy_name", "generation_approach", "key_elements", "category_name")
    return any(getattr(current, f) != getattr(proposed, f) for f in fields)


def history_frame(versions: list[StrategyVersion]) -> pd.DataFrame:
    rows = [{
        "version": v.version, "source": v.source + (f" (from v{v.reverted_from})" if v.reverted_from else ""),
        "author": v.author, "at": v.created_at[:19].replace("T", " "), "strategy_name": v.strategy.strategy_name,
        "generation_approach": shorten(v.strategy.generation_approach, 120),
        "key_elements": "; ".join(v.strategy.key_elements),
    } for v in reversed(versions)]  # newest first
    return pd.DataFrame(rows, columns=["version", "source", "author", "at", "strategy_name", "generation_approach",
                                       "key_elements"])


# --------------------------------------------------------------- samples


def sample_iterations(store: RunStore) -> list[int]:
    return [row["iteration"] for row in store.sample_counts(group_by=("iteration",))]


def sample_strategies(store: RunStore, iteration: int | None) -> list[str]:
    """The strategy names samples were generated from (pattern branch)."""
    return [row["strategy"] for row in store.sample_counts(iteration, group_by=("strategy",)) if row["strategy"]]


def sample_record(stored: StoredSample, written: Collection[str] = ()) -> dict[str, Any]:
    """One table row; `written`: the hand-written strategies' names, marked in the strategy column."""
    sample, qc = stored.sample, stored.qc
    return {
        "sample_id": sample.sample_id, "iteration": stored.iteration, "status": stored.status,
        "score": stored.score, "branch": sample.branch,
        "strategy": strategy_label(sample.based_on_strategy, sample.based_on_strategy in written),
        "based_on": sample.based_on_example, "attempts": stored.n_attempts,
        "question": shorten(sample.question, 200), "answer": shorten(sample.answer, 120),
        "feedback": shorten(qc.feedback if qc else "", 200), "reviewed_by": stored.status_author,
    }


SAMPLE_COLUMNS = ["sample_id", "iteration", "status", "score", "branch", "question", "answer", "feedback",
                  "strategy", "based_on", "attempts", "reviewed_by"]


def samples_frame(samples: list[StoredSample], written: Collection[str] = ()) -> pd.DataFrame:
    written = set(written)
    return pd.DataFrame([sample_record(s, written) for s in samples], columns=SAMPLE_COLUMNS)


def score_bounds(low: float, high: float, full: tuple[float, float] = (0.0, 10.0)) -> tuple[float | None, float | None]:
    """A score slider's range as store filters; the full range means no filter (keeps unjudged samples)."""
    return (None if low <= full[0] else low), (None if high >= full[1] else high)


def originals(store: RunStore, iteration: int) -> dict[str, dict[str, Any]]:
    """The training examples the iteration's samples were based on, by id: question, answer, the SLM's miss.

    The pattern and rephrase branches start from the iteration's training set;
    the error branch from its training-set failures, whose wrong prediction is
    kept too.
    """
    found: dict[str, dict[str, Any]] = {}
    for row in store.training_set(iteration):
        user = next((m["content"] for m in row.messages if m.get("role") == "user"), "")
        assistant = next((m["content"] for m in row.messages if m.get("role") == "assistant"), "")
        found[row.id] = {"id": row.id, "question": user, "answer": assistant, "prediction": None}
    for failure in store.failures(iteration, "train"):
        entry = found.setdefault(failure.id, {"id": failure.id, "question": failure.input,
                                              "answer": failure.ground_truth, "prediction": None})
        entry["prediction"] = failure.prediction
    return found


def qc_scores(stored: StoredSample) -> dict[str, Any]:
    """The judge's scores of the latest attempt (None where the branch has no such score)."""
    qc = stored.qc
    if qc is None:
        return {}
    return {"adherence": qc.adherence, "utility": qc.utility, "relevance": qc.relevance, "average": qc.average,
            "passed": qc.passed}


ATTEMPT_COLUMNS = ["attempt", "adherence", "utility", "relevance", "average", "passed", "judge_answer", "feedback",
                   "question", "answer"]


def attempts_frame(store: RunStore, iteration: int, sample_id: str) -> pd.DataFrame:
    """Every generation attempt of one sample, first first: the judge's scores and feedback on it and the text
    it wrote, so a reviewer sees what each regeneration changed (an unjudged attempt has no scores)."""
    rows = []
    for attempt in store.sample_history(iteration, sample_id):
        qc, sample = attempt.qc, attempt.sample
        rows.append({
            "attempt": sample.attempt, **{k: getattr(qc, k) if qc else None for k in ATTEMPT_COLUMNS[1:7]},
            "feedback": qc.feedback if qc else "", "question": sample.question, "answer": sample.answer,
        })
    return pd.DataFrame(rows, columns=ATTEMPT_COLUMNS)


def attempt_diff(before: pd.Series, after: pd.Series) -> str:
    """What a regeneration changed: a unified diff of two `attempts_frame` rows' text ('' when equal)."""
    def lines(row: pd.Series) -> list[str]:
        return [*row["question"].splitlines(), "--- answer ---", *row["answer"].splitlines()]

    return "\n".join(difflib.unified_diff(lines(before), lines(after), f"attempt {before['attempt']}",
                                          f"attempt {after['attempt']}", lineterm="", n=1))


# ------------------------------------------------------------- evolution


def error_counts_frame(store: RunStore, by: str = "pattern") -> pd.DataFrame:
    rows = [{"iteration": c.iteration, "category": c.category, "count": c.count} for c in store.error_counts(by=by)]
    return pd.DataFrame(rows, columns=["iteration", "category", "count"])


def metrics_frame(store: RunStore) -> pd.DataFrame:
    rows = [{"iteration": m.iteration, "split": m.split, "metric": m.name, "value": m.value} for m in store.metrics()]
    return pd.DataFrame(rows, columns=["iteration", "split", "metric", "value"])


def find_comparisons(root: Path | None = None) -> list[Path]:
    """`comparison.csv` files under the runs root (`compare`'s output folders), newest first."""
    base = runs_root(root)
    if not base.is_dir():
        return []
    found = list(base.glob(f"{COMPARISONS_DIR}/*/comparison.csv")) + list(base.glob("*/comparison.csv"))
    return sorted(set(found), key=lambda p: p.stat().st_mtime, reverse=True)


def read_comparison(path: Path) -> pd.DataFrame:
    """A `comparison.csv` with its numeric columns typed; a file without the expected columns is an error.

    Tables from before seeds and selection were recorded read as one seed (0), with `selected` worked out
    from the validation column the same way `compare` does (best validation, earliest on a tie)."""
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    missing = [c for c in COMPARISON_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: not a comparison table (missing columns: {', '.join(missing)})")
    frame = pd.read_csv(path)
    for column in ("iteration", "value", "tokens", "cost_usd"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").fillna(0).astype(int) if "seed" in frame else 0
    frame["validation"] = pd.to_numeric(frame["validation"], errors="coerce") if "validation" in frame else float("nan")
    if "selected" in frame:
        frame["selected"] = frame["selected"].astype(str).str.lower().eq("true")
    else:
        frame["selected"] = _selected_by_validation(frame)
    return frame


def _selected_by_validation(frame: pd.DataFrame) -> pd.Series:
    """Per (method, seed), True at the iteration with the best validation value (earliest on a tie)."""
    chosen = pd.Series(False, index=frame.index)
    if frame.empty:
        return chosen
    ranked = frame.assign(_v=frame["validation"].fillna(float("-inf"))).sort_values(
        ["method", "seed", "_v", "iteration"], ascending=[True, True, False, True])
    chosen[ranked.groupby(["method", "seed"], sort=False).head(1).index] = True
    return chosen


def read_comparison_summary(path: Path) -> pd.DataFrame | None:
    """The `comparison_summary.csv` beside a `comparison.csv` (one row per method: selected iteration,
    mean/std over seeds, difference to vanilla and its interval), or None for a table written before it."""
    summary = Path(path).with_name("comparison_summary.csv")
    if not summary.is_file():
        return None
    frame = pd.read_csv(summary, dtype={"seeds": str, "selected_iterations": str})
    for column in ("test_mean", "test_std", "validation_mean", "difference_vs_vanilla", "ci_low", "ci_high",
                   "ci_items", "synthetic", "tokens", "cost_usd"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def comparison_curves(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(test metric per method and iteration, mean over seeds; the selected iteration of each method and seed).

    The first is the chart's lines (columns method, iteration, value, seeds), the second its markers
    (method, seed, iteration, value)."""
    lines = (frame.groupby(["method", "iteration"], sort=False)
             .agg(value=("value", "mean"), seeds=("seed", "nunique")).reset_index())
    marks = frame.loc[frame["selected"], ["method", "seed", "iteration", "value"]].reset_index(drop=True)
    return lines, marks


# ------------------------------------------------------------------ cost


USAGE_COLUMNS = ["calls", "cache_hits", "failures", "prompt_tokens", "completion_tokens", "tokens", "cost_usd",
                 "latency_s", "mean_latency_s", "cache_hit_rate"]


def usage_frame(store: RunStore, group_by: tuple[str, ...] = ("stage", "model")) -> pd.DataFrame:
    """LLM usage summed per group, with total tokens, mean latency and cache-hit rate added."""
    summed = ["calls", "cache_hits", "failures", "prompt_tokens", "completion_tokens", "cost_usd", "latency_s"]
    frame = pd.DataFrame(store.llm_usage(group_by=group_by), columns=[*group_by, *summed])
    frame[summed] = frame[summed].fillna(0)
    frame["tokens"] = frame["prompt_tokens"] + frame["completion_tokens"]
    calls = frame["calls"].where(frame["calls"] > 0)
    frame["mean_latency_s"] = frame["latency_s"] / calls
    frame["cache_hit_rate"] = frame["cache_hits"] / calls
    return frame[[*group_by, *USAGE_COLUMNS]]


def iteration_table(frame: pd.DataFrame, index: str, sort: bool = True) -> pd.DataFrame:
    """`frame`'s `value` with one row per `index` and one column per iteration ("iteration 1", ...)."""
    table = frame.pivot_table(index=index, columns="iteration", values="value", sort=sort)
    table.columns = [f"iteration {c}" for c in table.columns]
    return table

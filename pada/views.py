"""What the dashboard pages show, built from the run store's public API; and the run processes it starts.

Pages (`pages/*.py`) stay thin: they cache these helpers' results and render
them. Nothing here imports Streamlit, so the helpers are testable on their
own and usable from scripts. Nothing here holds SQL either: every read and
write goes through `RunStore`.

Two halves:
- frames: store queries shaped as pandas DataFrames (one row per failure,
  point, sample, version, ...), plus the few joins and filters the store does
  not offer (text search over failures, originals of synthetic samples).
- processes: launch a run or a resume as a detached `python -m pada` process,
  stop one with SIGTERM to its process group, read the tail of its log.

Stores. Views read through a read-only `RunStore` (`readonly=True`: never
migrates or writes, works on a read-only disk); what changes a run (stopping
it, a reviewer's edits) opens a writable one (`writable_store`). Processes are
named by pid plus start time, and a run's process is the one holding its
runner lock, never a bare stored pid the system may have reused.
"""

from __future__ import annotations

import csv
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pada.records import ClusteringResult, Failure, Strategy
from pada.runs import (  # noqa: F401  (the pages use them through views)
    effective_status, headline_metric, process_alive, process_start_time, same_process, usage_totals,
)
from pada.store import RunStore, RunSummary, StoredSample, StrategyVersion, list_runs, runs_root
from pada.store.layout import readable_run_id

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICKSTART_CONFIG = REPO_ROOT / "configs" / "quickstart.yaml"
LAUNCH_DIR = "launches"  # under the runs root: the config and log of every run the dashboard started
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


def writable_store(store: RunStore) -> RunStore:
    """`store` itself when it may write, else a writable store on the same run (StoreError on a read-only disk)."""
    return RunStore(store.path) if store.readonly else store




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


def sample_record(stored: StoredSample) -> dict[str, Any]:
    sample, qc = stored.sample, stored.qc
    return {
        "sample_id": sample.sample_id, "iteration": stored.iteration, "status": stored.status,
        "score": stored.score, "branch": sample.branch, "strategy": sample.based_on_strategy,
        "based_on": sample.based_on_example, "attempts": stored.n_attempts,
        "question": shorten(sample.question, 200), "answer": shorten(sample.answer, 120),
        "feedback": shorten(qc.feedback if qc else "", 200), "reviewed_by": stored.status_author,
    }


SAMPLE_COLUMNS = ["sample_id", "iteration", "status", "score", "branch", "question", "answer", "feedback",
                  "strategy", "based_on", "attempts", "reviewed_by"]


def samples_frame(samples: list[StoredSample]) -> pd.DataFrame:
    return pd.DataFrame([sample_record(s) for s in samples], columns=SAMPLE_COLUMNS)


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


# ------------------------------------------------------------- processes


@dataclass(frozen=True)
class Launch:
    """A `python -m pada` process the dashboard started."""

    run_id: str
    pid: int
    log_path: Path
    command: tuple[str, ...]
    started: int | None = None  # the process's start time: with the pid, it names this process for good

    @property
    def alive(self) -> bool:
        """The launched process is still running (not some later process that got its pid)."""
        return same_process(self.pid, self.started)


def quickstart_dict() -> dict[str, Any]:
    """The offline quickstart config, fully resolved (every field), as plain data."""
    from pada.config import RunConfig, load_config

    config = load_config(QUICKSTART_CONFIG) if QUICKSTART_CONFIG.is_file() else RunConfig()
    return config.to_dict()


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied; nested mappings are merged, not replaced."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def build_config(overrides: Mapping[str, Any], base: Mapping[str, Any] | None = None):
    """A validated `RunConfig`: the quickstart (or `base`) with the form's overrides. Raises ConfigError.

    The overrides may not turn off the code sandbox (`refuse_unsandboxed`)."""
    from pada.config import from_dict

    refuse_unsandboxed(overrides, "new run form")
    return from_dict(merged(base if base is not None else quickstart_dict(), overrides), source="new run form")


UNSANDBOXED_KEY = "allow_unsandboxed"


def refuse_unsandboxed(data: Any, source: str, where: str = "") -> None:
    """ConfigError if `data` sets `allow_unsandboxed` anywhere (`task_options.allow_unsandboxed`, ...).

    Whoever can reach the dashboard must not be able to make it run model-written code outside the
    sandbox; that choice belongs to the machine's owner, in a terminal. Only an explicit false passes.
    """
    from pada.config import ConfigError

    if isinstance(data, Mapping):
        for key, value in data.items():
            path = f"{where}{key}"
            if key == UNSANDBOXED_KEY and value not in (False, None):
                raise ConfigError(f"{source}: {path}: the dashboard does not launch runs that execute code "
                                  "without the sandbox; start such a run from a terminal on a trusted machine "
                                  "(`python -m pada run --config FILE`)")
            refuse_unsandboxed(value, source, f"{path}.")
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            refuse_unsandboxed(value, source, f"{where}{index}.")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"  # the log shows progress as it happens
    # `python -m pada` must import this checkout's package whatever the app's working directory.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _reap(process: subprocess.Popen) -> None:
    """Wait for the child in a daemon thread, so a finished run never lingers as a zombie of the app."""
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()


def _spawn(args: list[str], run_id: str, root: Path) -> Launch:
    launches = root / LAUNCH_DIR
    launches.mkdir(parents=True, exist_ok=True)
    log_path = launches / f"{run_id}.log"
    command = [sys.executable, "-m", "pada", *args]
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=REPO_ROOT, env=_child_env(), start_new_session=True)
    started = process_start_time(process.pid)  # before the reaper can let the pid go
    _reap(process)
    return Launch(run_id=run_id, pid=process.pid, log_path=log_path, command=tuple(command), started=started)


def new_run_id(config: Mapping[str, Any]) -> str:
    """`20261123-130501-arc_challenge-pada-3f2a`: readable and unique even for two clicks in one second."""
    return f"{readable_run_id(config)}-{secrets.token_hex(2)}"


def launch_run(config, root: Path | None = None, run_id: str | None = None) -> Launch:
    """Start `python -m pada run` for `config` (a RunConfig) in the background; returns at once.

    The config is written next to the log under `<runs root>/launches/`; the run
    id is chosen here so the page can select the run before its process has
    created it.
    """
    import yaml

    root = runs_root(root).resolve()
    data = config.to_dict()
    refuse_unsandboxed(data, "dashboard launch")
    run_id = run_id or new_run_id(data)
    config_path = root / LAUNCH_DIR / f"{run_id}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return _spawn(["run", "--config", str(config_path), "--runs-root", str(root), "--run-id", run_id], run_id, root)


def resume_run(store: RunStore) -> Launch:
    """Start `python -m pada resume` for the store's run in the background (after a pause, stop or crash)."""
    state = store.state()
    if state.status == "completed":
        raise ValueError(f"run {store.run_id} is already completed")
    runner = store.runner()
    if runner is not None:  # the resume would exit at once on the run's lock
        by = f"pid {runner.pid}" if runner.pid else "another process"
        raise ValueError(f"run {store.run_id} is still running ({by}); stop it first")
    root = store.path.parent.resolve()
    return _spawn(["resume", store.run_id, "--runs-root", str(root)], store.run_id, root)


def stop_run(store: RunStore, wait_s: float = 10.0) -> str:
    """SIGTERM the run's runner, wait for it to go, and record the run as stopped.

    The runner is the process holding the run's lock, confirmed by its start
    time; the pid stored in the run is never signalled on its own word (once
    the runner is gone the system may give it to any process). A runner that
    leads its own process group (the dashboard starts runs in a new session)
    gets the SIGTERM for the whole group, so every worker it spawned goes too;
    one started in a terminal gets it alone. A stage cut short is redone on
    resume (its records are written atomically with its done marker).
    """
    state = store.state()
    runner = store.runner()
    if runner is None:
        if state.status == "running":
            writer = writable_store(store)
            writer.set_status("stopped", error="its process had already ended")
            writer.set_pid(None)
        return f"run {store.run_id} has no running process"
    pid = runner.pid
    if not runner.confirmed:
        return (f"run {store.run_id} is locked, but pid {pid} is no longer the process that locked it "
                "(a worker it forked may still hold the lock); nothing was signalled")
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait_s
    while store.runner() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if store.runner() is not None:
        return f"sent SIGTERM to run {store.run_id} (pid {pid}); it is still shutting down"
    writer = writable_store(store)
    if writer.state().status in ACTIVE_STATUSES:
        writer.set_status("stopped", error="stopped from the dashboard")
        writer.set_pid(None)
    writer.log_event("warning", "stopped from the dashboard", iteration=state.iteration, stage=state.stage)
    return f"stopped run {store.run_id}"


def launch_log(root: Path | None, run_id: str) -> Path:
    return runs_root(root) / LAUNCH_DIR / f"{run_id}.log"


def log_tail(path: Path, lines: int = 30, max_bytes: int = 64_000) -> str:
    """The last `lines` lines of a log file ('' if there is none)."""
    if not path.is_file():
        return ""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - max_bytes))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def iteration_table(frame: pd.DataFrame, index: str, sort: bool = True) -> pd.DataFrame:
    """`frame`'s `value` with one row per `index` and one column per iteration ("iteration 1", ...)."""
    table = frame.pivot_table(index=index, columns="iteration", values="value", sort=sort)
    table.columns = [f"iteration {c}" for c in table.columns]
    return table

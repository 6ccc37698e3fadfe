"""Shared helpers for the run-level commands (run, resume, status, runs, compare, export).

They combine the run store's queries into what a person wants to see about a
run: where it is, its headline metrics, and what its LLM calls cost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pada.store import RunStore


def process_alive(pid: int | None) -> bool:
    """Whether a process with this id is running (a zombie, ended but not reaped by its parent, is not)."""
    from pada.store.lock import pid_exists

    return bool(pid) and pid_exists(pid) and not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no procfs (macOS) or the process just went
        return False
    return stat[stat.rfind(")") + 2:].startswith("Z")  # the state follows the parenthesised command name


def process_start_time(pid: int | None) -> int | None:
    """When process `pid` started (clock ticks since boot; None without procfs or process): with the pid,
    it names one process for good, as a pid alone does not once the system reuses it."""
    from pada.store.lock import process_start_time as start_time

    return start_time(pid) if pid else None


def same_process(pid: int | None, started: int | None) -> bool:
    """`pid` is alive and is the process that started at `started` (not a later one given the same pid)."""
    if not process_alive(pid):
        return False
    return started is None or process_start_time(pid) in (None, started)


def runner_alive(pid: int | None, run_dir: str | os.PathLike | None = None) -> bool:
    """Whether the run's loop is running: some process holds its runner lock (`run_dir` given),
    else, for callers that only know the stored pid, whether a process with that pid is alive."""
    if run_dir is not None:
        from pada.store.lock import holder

        return holder(run_dir) is not None
    return process_alive(pid)


def effective_status(status: str, pid: int | None, run_dir: str | os.PathLike | None = None) -> str:
    """The stored status, or `interrupted` when a `running` run's process is gone (killed, crashed).

    Pass `run_dir` wherever it is known: the run's lock then says whether its runner lives, which a
    stored pid cannot (the system may have given it to another process since)."""
    if status == "running" and not runner_alive(pid, run_dir):
        return "interrupted"
    return status


@dataclass
class RunOverview:
    run_id: str
    task: str | None
    method: str | None
    status: str  # the stored status, or "interrupted" when its process died while running
    iteration: int | None
    stage: str | None
    progress: dict[str, Any] | None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # "validation" -> {"1": 0.31, ...}
    tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    # The judge check per iteration (pada/agents/canaries.py `summarise`): "1" -> {"planted", "judged",
    # "rejected", "catch_rate", "controls", "controls_judged", "controls_accepted", "control_acceptance"}.
    judge_check: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. the judge passed more than a third of the canaries
    # Provider batches the run has sent and not seen end (llm.batch): RunStore.pending_llm_batches rows.
    batches_pending: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def overview(store: RunStore) -> RunOverview:
    from pada.llm.batch import ENDED

    state, config = store.state(), store.config()
    status = effective_status(state.status, state.pid, store.path)  # "interrupted": `pada resume` continues it
    headline = headline_metric(config, {row.name for row in store.metrics()})
    metrics: dict[str, dict[str, float]] = {}
    for row in store.metrics(name=headline):
        metrics.setdefault(row.split, {})[str(row.iteration)] = round(row.value, 4)
    progress = None
    if state.iteration is not None and state.stage:
        for row in store.progress(state.iteration):
            if row.stage == state.stage:
                progress = {"done": row.done, "total": row.total}
    usage = usage_totals(store)
    check, warnings = judge_check(store)
    return RunOverview(run_id=state.run_id, task=config.get("task"), method=config.get("method"), status=status,
                       iteration=state.iteration, stage=state.stage, progress=progress, metrics=metrics,
                       tokens=int(usage["tokens"]), cost_usd=usage["cost_usd"], error=state.error,
                       judge_check=check, warnings=warnings, batches_pending=store.pending_llm_batches(ENDED))


def judge_check(store: RunStore) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per iteration, how the judge did on the planted samples, and a warning for each iteration in
    which it passed more than a third of the bad ones (runs without planted samples: nothing)."""
    from pada.agents.canaries import CanaryVerdict, judge_warning, summarise

    by_iteration: dict[int, list[CanaryVerdict]] = {}
    for row in store.canaries():
        verdict = CanaryVerdict.model_validate(row)
        by_iteration.setdefault(verdict.iteration, []).append(verdict)
    check, warnings = {}, []
    for iteration in sorted(by_iteration):
        check[str(iteration)] = summary = summarise(by_iteration[iteration])
        warning = judge_warning(summary, iteration)
        if warning:
            warnings.append(warning)
    return check, warnings


def batch_line(batch: Mapping[str, Any]) -> str:
    """`it1 quality round 2: openai batch_abc in_progress (12 requests, sent 2026-12-01T15:00:00Z)`."""
    return (f"it{batch['iteration']} {batch['stage']} round {batch['round']}: {batch['provider']} "
            f"{batch['batch_id']} {batch['status']} ({batch['n_requests']} requests, sent {batch['created_at']})")


def judge_check_line(iteration: str, summary: Mapping[str, Any]) -> str:
    """`it1 rejected 3/4 planted bad samples (75%), accepted 2/2 training examples (100%)`."""
    def rate(value) -> str:
        return "n/a" if value is None else f"{100 * value:.0f}%"

    return (f"it{iteration} rejected {summary['rejected']}/{summary['judged']} planted bad samples "
            f"({rate(summary['catch_rate'])}), accepted {summary['controls_accepted']}/{summary['controls_judged']} "
            f"training examples ({rate(summary['control_acceptance'])})")


HEADLINE_METRICS = ("accuracy", "exact_match", "pass@1")  # the tasks' headline metrics, in preference order


def headline_metric(config: Mapping[str, Any], names: Iterable[str] = ()) -> str:
    """The metric the run's task reports, from the task class (no data loading), else from what is stored."""
    from pada.tasks import BUILTIN_TASKS

    task = BUILTIN_TASKS.get(str(config.get("task", "")))
    if task is not None:
        return task.metric
    names = list(names)
    return next((n for n in HEADLINE_METRICS if n in names), names[0] if names else "accuracy")


def usage_totals(store: RunStore) -> dict[str, float]:
    """Calls, tokens and cost of every LLM call the run made."""
    rows = store.llm_usage(group_by=())
    total = rows[0] if rows else {}
    return {
        "calls": int(total.get("calls") or 0),
        "tokens": int((total.get("prompt_tokens") or 0) + (total.get("completion_tokens") or 0)),
        "cost_usd": float(total.get("cost_usd") or 0.0),
    }

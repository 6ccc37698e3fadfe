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
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no procfs (macOS) or the process just went
        return False
    return stat[stat.rfind(")") + 2:].startswith("Z")  # the state follows the parenthesised command name


def effective_status(status: str, pid: int | None) -> str:
    """The stored status, or `interrupted` when a `running` run's process is gone (killed, crashed)."""
    if status == "running" and not process_alive(pid):
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def overview(store: RunStore) -> RunOverview:
    state, config = store.state(), store.config()
    status = effective_status(state.status, state.pid)  # "interrupted": `pada resume` continues it
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
    return RunOverview(run_id=state.run_id, task=config.get("task"), method=config.get("method"), status=status,
                       iteration=state.iteration, stage=state.stage, progress=progress, metrics=metrics,
                       tokens=int(usage["tokens"]), cost_usd=usage["cost_usd"], error=state.error)


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

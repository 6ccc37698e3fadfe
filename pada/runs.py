"""Shared helpers for the run-level commands (run, resume, status, runs, compare, export).

They combine the run store's queries into what a person wants to see about a
run: where it is, its headline metrics, and what its LLM calls cost.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from pada.store import RunStore


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    status = state.status
    if status == "running" and not process_alive(state.pid):
        status = "interrupted"  # killed without a chance to record it; `pada resume` continues it
    headline = headline_metric(config)
    metrics: dict[str, dict[str, float]] = {}
    for row in store.metrics(name=headline):
        metrics.setdefault(row.split, {})[str(row.iteration)] = round(row.value, 4)
    progress = None
    if state.iteration is not None and state.stage:
        for row in store.progress(state.iteration):
            if row.stage == state.stage:
                progress = {"done": row.done, "total": row.total}
    usage = store.llm_usage(group_by=())
    tokens = sum((u["prompt_tokens"] or 0) + (u["completion_tokens"] or 0) for u in usage)
    cost = sum(u["cost_usd"] or 0.0 for u in usage)
    return RunOverview(run_id=state.run_id, task=config.get("task"), method=config.get("method"), status=status,
                       iteration=state.iteration, stage=state.stage, progress=progress, metrics=metrics,
                       tokens=int(tokens), cost_usd=float(cost), error=state.error)


def headline_metric(config: dict[str, Any]) -> str:
    """The metric name the run's task reports (accuracy, exact_match, pass@1)."""
    from pada.tasks import get_task

    try:
        task = get_task(config.get("task", ""), data_dir=config.get("data_dir"), **config.get("task_options", {}))
        return task.metric
    except Exception:  # a run whose data moved can still be listed
        return "accuracy"

"""The run store: the one place that reads and writes a run's persisted data.

    from pada.store import RunStore, list_runs

    store = RunStore.create(config)              # new run under runs_root()
    store = RunStore.open("20261123-130501-arc_challenge-pada")
    with store.transaction():                    # a stage's records + done marker, atomically
        store.save_failures(1, "validation", failures)
        store.mark_stage_done(1, "evaluate", signature)

See `run_store.py` for the threading, transaction and replace-by-scope rules
and `schema.py` for the tables and migrations.
"""

from pada.store.layout import runs_root
from pada.store.lock import RunLocked, Runner
from pada.store.run_store import RunStore, list_runs
from pada.store.schema import SCHEMA_VERSION, StoreError
from pada.store.stored import (
    ACCEPTED_STATUSES,
    EVENT_LEVELS,
    LEAKED_STATUS,
    RUN_STATUSES,
    SAMPLE_STATUSES,
    ErrorCount,
    Event,
    FailureRow,
    MetricRow,
    RunState,
    RunSummary,
    SampleAttempt,
    StageProgress,
    StoredSample,
    StrategyVersion,
    Taxon,
    TrainingRow,
)

__all__ = [
    "ACCEPTED_STATUSES", "EVENT_LEVELS", "LEAKED_STATUS", "RUN_STATUSES", "SAMPLE_STATUSES", "SCHEMA_VERSION",
    "ErrorCount", "Event", "FailureRow", "MetricRow", "RunState", "RunStore", "RunSummary",
    "RunLocked", "Runner",
    "SampleAttempt", "StageProgress", "StoreError", "StoredSample", "StrategyVersion", "Taxon", "TrainingRow",
    "list_runs", "runs_root",
]

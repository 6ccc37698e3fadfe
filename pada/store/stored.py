"""Read-side types the store returns besides the pipeline's records.

The pipeline's own records (`pada.records`) come back as validated pydantic
models. These small frozen dataclasses add what only the store knows: run
state, versions, statuses, authors, timestamps and aggregates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pada.records import ErrorAnalysis, Failure, Message, QCResult, Strategy, SyntheticSample

# Life cycle of a run. `awaiting_review`: paused for a person to review strategies / samples.
RUN_STATUSES = ("created", "running", "awaiting_review", "completed", "failed", "stopped")
# A sample is `pending_qc` from generation until the judge scored its latest attempt.
# `rejected_leak`: it overlaps a validation/test question; set only by the leakage guard and final
# (no review decision, judge verdict or regeneration changes it).
SAMPLE_STATUSES = ("pending_qc", "accepted_qc", "rejected_qc", "accepted_human", "rejected_human", "rejected_leak")
LEAKED_STATUS = "rejected_leak"
ACCEPTED_STATUSES = ("accepted_qc", "accepted_human")
EVENT_LEVELS = ("debug", "info", "warning", "error")


class TrainingRow(BaseModel):
    """One row of the training set an iteration used: the example or sample id and its chat turns."""

    id: str
    messages: list[Message]


@dataclass(frozen=True)
class RunState:
    run_id: str
    status: str
    iteration: int | None  # the iteration / stage the background process is in (or stopped at)
    stage: str | None
    pid: int | None
    error: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class RunSummary:
    """One line of the runs list (`pada runs`, the dashboard's run picker)."""

    run_id: str
    path: Path
    task: str | None
    status: str
    iteration: int | None
    stage: str | None
    pid: int | None
    error: str | None
    created_at: str
    updated_at: str
    config: dict[str, Any]


@dataclass(frozen=True)
class StrategyVersion:
    version: int
    strategy: Strategy
    source: str  # drafted | edited | reverted | written (version 1 of a hand-written strategy)
    author: str
    created_at: str
    reverted_from: int | None = None


@dataclass(frozen=True)
class StoredSample:
    """A synthetic sample as the samples page shows it: its latest attempt, QC verdict and status."""

    sample: SyntheticSample
    qc: QCResult | None  # the judge's verdict on the latest attempt, None while pending
    iteration: int
    status: str
    n_attempts: int
    status_author: str | None
    status_at: str | None

    @property
    def score(self) -> float | None:
        return self.qc.average if self.qc else None


@dataclass(frozen=True)
class SampleAttempt:
    sample: SyntheticSample
    qc: QCResult | None


@dataclass(frozen=True)
class FailureRow:
    """A failure joined with its analysis and cluster, for the failures page."""

    failure: Failure
    analysis: ErrorAnalysis | None
    cluster_id: int | None
    category_name: str | None  # the cluster's pattern name


@dataclass(frozen=True)
class MetricRow:
    iteration: int
    split: str
    name: str
    value: float


@dataclass(frozen=True)
class ErrorCount:
    iteration: int
    category: str
    count: int


@dataclass(frozen=True)
class StageProgress:
    iteration: int
    stage: str
    done: int
    total: int | None
    updated_at: str


@dataclass(frozen=True)
class Event:
    id: int
    at: str
    level: str
    message: str
    iteration: int | None
    stage: str | None


@dataclass(frozen=True)
class Taxon:
    """One iteration's pattern (cluster) placed in the run's taxonomy (pada/agents/taxonomy.py): patterns of
    different iterations with the same `taxon_id` are the same error pattern followed across iterations."""

    iteration: int
    cluster_id: int
    taxon_id: int
    similarity: float | None  # to the earlier pattern of the taxon it was matched with; None: a new taxon
    display_name: str  # the name the taxon's first pattern had (the iteration's own name is its Pattern's)

"""The Task interface every benchmark implements.

A task knows three things: how to read its source data into `Example`
records (`pools`), how to turn an example into chat messages (`Example.prompt`
/ `Example.answer`, built by the task), and how to decide whether the SLM's
answer is right (`score`). Everything else (nested training subsets, fixed
validation and test sets) is shared code in this module.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from pada.records import Example, Score


from pada.errors import DataError


class TaskError(DataError):
    """Bad task input: the message names the file, line and field."""


@dataclass
class Pools:
    """Disjoint pools of examples a task draws its splits from."""

    train: list[Example]  # training subsets are drawn from here
    validation: list[Example]  # the fixed validation set is drawn from here
    test: list[Example]  # the test set (or a fixed subset of it)


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]


class Task(abc.ABC):
    name: str  # registry key, e.g. "arc_challenge"
    metric: str  # headline metric name, e.g. "accuracy", "exact_match", "pass@1"
    max_new_tokens: int = 32  # generation budget the SLM needs for an answer

    @abc.abstractmethod
    def pools(self) -> Pools:
        """Read the source data into disjoint train / validation / test pools."""

    @abc.abstractmethod
    def score(self, example: Example, prediction: str) -> Score:
        """Decide whether `prediction` answers `example` correctly."""

    def examples_by_id(self) -> dict[str, Example]:
        """Every example of every source split, by id (used by `pada score`)."""
        pools = self.pools()
        return {ex.id: ex for pool in (pools.train, pools.validation, pools.test) for ex in pool}

    def splits(self, train_size: int = 1000, val_size: int = 500, test_size: int | None = 500,
               seed: int = 0) -> Splits:
        """Nested training subsets (same seed: 300 ⊂ 600 ⊂ 1000), fixed validation and test sets."""
        raise NotImplementedError  # filled in by the tasks implementation

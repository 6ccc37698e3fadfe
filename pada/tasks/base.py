"""The Task interface every benchmark implements.

A task knows three things: how to read its source data into `Example`
records (`pools`), how to turn an example into chat messages (`Example.prompt`
/ `Example.answer`, built by the task), and how to decide whether the SLM's
answer is right (`score`). Everything else (nested training subsets, fixed
validation and test sets) is shared code in this module.
"""

from __future__ import annotations

import abc
import os
import random
from dataclasses import dataclass
from pathlib import Path

from pada.errors import DataError
from pada import paths
from pada.records import Example, Score
from pada.tasks.forms import FREE_FORM, SampleForm


class TaskError(DataError):
    """Bad task input: the message names the file, line and field."""


@dataclass
class Pools:
    """Disjoint pools of examples a task draws its splits from."""

    train: list[Example]  # training subsets are drawn from here
    validation: list[Example]  # the fixed validation set is drawn from here
    test: list[Example]  # the test set (or a fixed subset of it)
    # The first `preferred_train` examples of `train` are used before the rest: each part is
    # shuffled on its own and the preferred part comes first (MBPP 601-974 before 1-10/511-600).
    preferred_train: int | None = None

    def sizes(self) -> dict[str, int]:
        return {"train_pool": len(self.train), "validation_pool": len(self.validation), "test_pool": len(self.test)}


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]


def seeded_order(pool: list[Example], seed: int, preferred: int | None = None) -> list[Example]:
    """The training pool shuffled once with `seed`; prefixes of it are the nested subsets."""
    parts = [pool] if preferred is None else [pool[:preferred], pool[preferred:]]
    ordered: list[Example] = []
    for part in parts:
        part = list(part)
        random.Random(seed).shuffle(part)
        ordered += part
    return ordered


def fixed_subset(pool: list[Example], size: int | None, key: str) -> list[Example]:
    """A fixed (seed-independent) subset of `size` examples, in pool order; all when size is None or larger.

    Subsets are nested too (100 of them are inside 500), because they are
    prefixes of one permutation fixed by `key`.
    """
    if size is None or size >= len(pool):
        return list(pool)
    order = list(range(len(pool)))
    random.Random(key).shuffle(order)
    return [pool[i] for i in sorted(order[:size])]


class Task(abc.ABC):
    name: str  # registry key, e.g. "arc_challenge"
    metric: str  # headline metric name, e.g. "accuracy", "exact_match", "pass@1"
    max_new_tokens: int = 32  # generation budget the SLM needs for an answer
    title: str = ""  # human name for listings, e.g. "ARC-Challenge"

    def __init__(self, data_dir: str | os.PathLike | None = None):
        self.data_root: Path = paths.data_dir(data_dir)  # --data-dir, else $PADA_DATA_DIR, else ../shared/data
        self._pools: Pools | None = None
        self._by_id: dict[str, Example] | None = None

    def pools(self) -> Pools:
        """Disjoint train / validation / test pools, read once per Task object.

        Tasks implement `load_pools`; a subclass may also override `pools` itself.
        """
        if getattr(self, "_pools", None) is None:
            self._pools = self.load_pools()
        return self._pools

    def load_pools(self) -> Pools:
        """Read the source data into disjoint train / validation / test pools."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_pools() or pools()")

    # A rule for generators, added to every generation prompt: small LLMs drop per-question parts
    # (the options of a multiple-choice question) unless told; `format_problem` checks the result.
    format_hint: str = ""
    # The fields a generator writes for a new example (pada.tasks.forms): options and the answer letter
    # for multiple choice, a solution and a final number for maths, else a free question and answer.
    sample_form: SampleForm = FREE_FORM

    def format_problem(self, prompt: str, answer: str) -> str | None:
        """Why a generated (question, answer) pair breaks this task's format, or None if it fits.

        Synthetic samples must keep the format the SLM is scored on (lettered options and a letter,
        a final number, a short span, parsable code); the loop drops those that do not.
        """
        return None

    @abc.abstractmethod
    def score(self, example: Example, prediction: str) -> Score:
        """Decide whether `prediction` answers `example` correctly."""

    def examples_by_id(self) -> dict[str, Example]:
        """Every example of every source split, by id (used by `pada score`)."""
        if getattr(self, "_by_id", None) is None:
            pools = self.pools()
            self._by_id = {ex.id: ex for pool in (pools.train, pools.validation, pools.test) for ex in pool}
        return self._by_id

    def lookup(self, ids) -> dict[str, Example]:
        """The examples with these ids (unknown ids are left out). Tasks may answer without loading everything."""
        by_id = self.examples_by_id()
        return {i: by_id[i] for i in ids if i in by_id}

    def splits(self, train_size: int | None = 1000, val_size: int | None = 500, test_size: int | None = 500,
               seed: int = 0) -> Splits:
        """Nested training subsets (same seed: 300 ⊂ 600 ⊂ 1000), fixed validation and test sets.

        train: the pool shuffled once with `seed`, first `train_size` (None: all).
        validation / test: fixed subsets (independent of `seed`) of `val_size` /
        `test_size` examples, or the whole pool when it is smaller or the size is None.
        """
        pools = self.pools()
        ordered = seeded_order(pools.train, seed, pools.preferred_train)
        train = ordered if train_size is None else ordered[:train_size]
        return Splits(train=train,
                      validation=fixed_subset(pools.validation, val_size, f"{self.name}/validation"),
                      test=fixed_subset(pools.test, test_size, f"{self.name}/test"))

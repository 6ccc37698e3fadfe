"""Hugging Face hub copies of the benchmarks, converted to the local files' raw records.

Used only when no local copy exists (`pada.tasks.sources.load_rows`). Each
function loads one split with `datasets` and yields dicts shaped exactly like
one line of the corresponding local file, in the same order, so everything
after loading (ids, carving, prompts, scoring) is shared. `datasets` is
imported lazily: it is slow to import and needs network access for a first
download.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0


class HubUnavailable(RuntimeError):
    """The hub cannot be used from here (no `datasets`, or no route to the endpoint)."""


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@lru_cache(maxsize=1)
def _unreachable_reason() -> str | None:
    """Why the hub endpoint cannot be reached (None: it can), probed once per process.

    Without this, `datasets` retries an unreachable hub for about two minutes
    per dataset, logging every retry, before it gives up.
    """
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as err:
        return f"cannot reach {url.hostname}: {err.strerror or err}"


def _load(repo: str, config: str | None, split: str):
    if not _offline():  # offline mode still reads an existing local HF cache, and fails fast
        reason = _unreachable_reason()
        if reason:
            raise HubUnavailable(reason)
    try:
        import datasets
    except ImportError:
        raise HubUnavailable("the `datasets` package is not installed") from None
    return datasets.load_dataset(repo, config, split=split)


def arc_challenge(split: str) -> Iterator[dict[str, Any]]:
    """`split`: train / validation / test -> the AI2 record format of ARC-Challenge-*.jsonl."""
    for row in _load("allenai/ai2_arc", "ARC-Challenge", split):
        choices = [{"text": text, "label": label}
                   for text, label in zip(row["choices"]["text"], row["choices"]["label"])]
        yield {"id": row["id"], "question": {"stem": row["question"], "choices": choices},
               "answerKey": row["answerKey"]}


def gsm8k(split: str) -> Iterator[dict[str, Any]]:
    """`split`: train / test -> {"question", "answer"} as in grade-school-math's JSONL."""
    for row in _load("openai/gsm8k", "main", split):
        yield {"question": row["question"], "answer": row["answer"]}


def hellaswag_validation() -> Iterator[dict[str, Any]]:
    """The labelled validation split -> hellaswag_val.jsonl records (label as int)."""
    for row in _load("Rowan/hellaswag", None, "validation"):
        record = dict(row)
        record["label"] = int(record["label"])
        yield record


def squad(split: str) -> Iterator[dict[str, Any]]:
    """`split`: train / validation -> the SQuAD JSONL schema (ids dropped for train, as in the local rebuild)."""
    for row in _load("rajpurkar/squad", None, split):
        answers = {"text": list(row["answers"]["text"]), "answer_start": list(row["answers"]["answer_start"])}
        yield {"id": row["id"] if split != "train" else None, "title": row["title"], "context": row["context"],
               "question": row["question"], "answers": answers}


def humaneval() -> Iterator[dict[str, Any]]:
    for row in _load("openai/openai_humaneval", None, "test"):
        yield dict(row)


def mbpp() -> Iterator[dict[str, Any]]:
    """All 974 problems of the "full" config, in task_id order (mbpp.jsonl holds them all in one file)."""
    rows = [dict(row) for split in ("train", "test", "validation", "prompt")
            for row in _load("google-research-datasets/mbpp", "full", split)]
    yield from sorted(rows, key=lambda row: row["task_id"])

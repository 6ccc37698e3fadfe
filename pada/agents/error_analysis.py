"""Error analysis stage: an LLM explains why the SLM failed on each validation sample.

Input: the SLM's validation failures. They are subsampled (paper: at most 50) and sent in
small batches; per failure the LLM returns `sample_idx`, `error_cause` and
`scenario_category` (the paper's field names).

Every selected failure ends with exactly one `ErrorAnalysis`:
  1. one request per batch (`batch_size` failures, sent concurrently);
  2. entries for samples not in the batch are dropped, duplicates keep the first;
     a reply that fails validation is still searched for usable entries;
  3. failures still missing are re-asked one at a time (a one-failure request counts its
     only entry whatever sample_idx it carries; with batch_size 1 there is no re-ask, as it
     would repeat the same request);
  4. if that fails too, the failure gets `ErrorAnalysis(ok=False, raw=<reply>)`, so
     nothing is silently lost and the loop carries on.

Cost: ceil(n / batch_size) LLM calls, plus one per failure the batch replies missed.
`sample_idx` is the failure's position in the selected list (0-based), the same number
the prompt shows, so stored analyses can be matched against what the LLM saw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

from pydantic import BaseModel, Field, create_model

from pada.agents.text import truncate
from pada.llm import JSONRequest, LLMClient, StructuredResult
from pada.llm.jsonparse import salvage_items
from pada.llm.prompts import render
from pada.records import ErrorAnalysis, Failure, Message

STAGE = "error_analysis"
PROMPT = "error_analysis"  # pada/llm/prompts/error_analysis.jinja2


@dataclass
class ErrorAnalysisConfig:
    """Settings for `analyse_failures`: how many failures, how many per call, sampling."""

    max_failures: int = field(
        default=50,
        metadata={"help": "Subsample the validation failures to at most this many (paper: 50); "
                  "bounds the cost of the analysis stage."},
    )
    batch_size: int = field(
        default=5,
        metadata={"help": "Failures per LLM call. The paper batches; 5 is what a 0.5B local model still "
                  "answers completely (MEASURED.md: with more it drops items)."},
    )
    seed: int = field(default=0, metadata={"help": "Seeds the subsample, so a run is reproducible."})
    temperature: float = field(default=0.0, metadata={"help": "Paper: 0 for all analysis calls."})
    max_field_chars: int = field(
        default=1500,
        metadata={"help": "Query, response and ground truth are each cut to this many characters "
                  "(head and tail kept) so long contexts or code fit a small model's window."},
    )
    reask_missing: bool = field(
        default=True,
        metadata={"help": "Re-ask, one at a time, for failures a batch reply left out (False: record them "
                  "as failed straight away; saves calls)."},
    )

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {self.max_failures}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_field_chars < 40:
            raise ValueError(f"max_field_chars must be >= 40, got {self.max_field_chars}")


# ---------------------------------------------------------------------------
# What the LLM returns


class AnalysisItem(BaseModel):
    sample_idx: int
    error_cause: str = Field(min_length=1)
    scenario_category: str = Field(min_length=1)


@lru_cache(maxsize=None)
def batch_schema(count: int) -> type[BaseModel]:
    """`{"analyses": [AnalysisItem] * count}`: the exact count helps constrained decoding stop
    at the right number of items (MEASURED.md section 4). Every size shares the class name
    `ErrorAnalysisBatch`, the schema name a server sees in `response_format`."""
    return create_model(
        "ErrorAnalysisBatch",
        analyses=(list[AnalysisItem], Field(min_length=count, max_length=count)),
    )


# ---------------------------------------------------------------------------
# Selecting and showing failures


def select_failures(failures: list[Failure], max_failures: int = 50, seed: int = 0) -> list[Failure]:
    """At most `max_failures` failures, drawn with a seeded RNG, kept in their original order.

    The same input and seed always give the same selection; with few enough failures all
    are kept.
    """
    if len(failures) <= max_failures:
        return list(failures)
    chosen = sorted(random.Random(seed).sample(range(len(failures)), max_failures))
    return [failures[i] for i in chosen]


def failure_view(failure: Failure, sample_idx: int, limit: int) -> dict:
    """What a prompt shows of one failure: its number, the query, the SLM's response, the ground truth."""
    response = truncate(failure.prediction, limit)
    if failure.extracted is not None and failure.extracted.strip() and failure.extracted.strip() != response:
        response += f"\n(answer read from the response: {truncate(failure.extracted, 200)})"
    return {
        "sample_idx": sample_idx,
        "failure_id": failure.id,
        "query": truncate(failure.input, limit),
        "response": response or "(empty response)",
        "ground_truth": truncate(failure.ground_truth, limit),
    }


def analysis_messages(samples: list[dict], task_description: str = "") -> list[Message]:
    """The chat messages for one batch (also what the UI shows as a prompt preview)."""
    return render(PROMPT, samples=samples, task_description=task_description)


# ---------------------------------------------------------------------------
# Reading replies


def usable_items(result) -> list[AnalysisItem]:
    """The valid analyses in a reply: the validated value, or, when validation failed (wrong
    count, one bad entry), every entry of the raw text that validates on its own."""
    if result.ok and result.value is not None:
        return list(result.value.analyses)
    return salvage_items(result.raw, "analyses", AnalysisItem)


def match_items(items: list[AnalysisItem], expected: list[int]) -> dict[int, AnalysisItem]:
    """Keep the first entry for each expected sample_idx; invented indices are dropped."""
    found: dict[int, AnalysisItem] = {}
    for item in items:
        if item.sample_idx in expected and item.sample_idx not in found:
            found[item.sample_idx] = item
    return found


def _analysis(failure: Failure, sample_idx: int, item: AnalysisItem) -> ErrorAnalysis:
    return ErrorAnalysis(
        failure_id=failure.id,
        sample_idx=sample_idx,
        error_cause=item.error_cause.strip(),
        scenario_category=item.scenario_category.strip(),
    )


def _failed(failure: Failure, sample_idx: int, result: StructuredResult) -> ErrorAnalysis:
    raw = result.raw or f"(no reply: {result.error or 'unknown error'})"
    return ErrorAnalysis(failure_id=failure.id, sample_idx=sample_idx, ok=False, raw=raw)


# ---------------------------------------------------------------------------
# The stage


def analyse_failures(
    failures: list[Failure],
    llm: LLMClient,
    config: ErrorAnalysisConfig | None = None,
    task_description: str = "",
) -> list[ErrorAnalysis]:
    """Explain each selected failure with the LLM (`llm` is a `pada.llm.LLMClient`).

    Returns one `ErrorAnalysis` per selected failure, ordered by `sample_idx`; analyses the
    LLM never delivered have `ok=False` and keep the last raw reply.
    """
    config = config or ErrorAnalysisConfig()
    selected = select_failures(failures, config.max_failures, config.seed)
    views = [failure_view(f, i, config.max_field_chars) for i, f in enumerate(selected)]
    batches = [views[i : i + config.batch_size] for i in range(0, len(views), config.batch_size)]

    def request(batch: list[dict]) -> JSONRequest:
        return JSONRequest(messages=analysis_messages(batch, task_description), schema=batch_schema(len(batch)),
                           stage=STAGE, temperature=config.temperature)

    done: dict[int, ErrorAnalysis] = {}
    missing: list[tuple[dict, StructuredResult]] = []  # (view, the batch result that missed it)
    gave_up: list[tuple[dict, StructuredResult]] = []  # missed by a one-failure request: asking again is the same request
    for batch, result in zip(batches, llm.complete_json_many([request(b) for b in batches])):
        found = _found_in(usable_items(result), [v["sample_idx"] for v in batch])
        for view in batch:
            idx = view["sample_idx"]
            if idx in found:
                done[idx] = _analysis(selected[idx], idx, found[idx])
            else:
                (missing if len(batch) > 1 and config.reask_missing else gave_up).append((view, result))

    retries = llm.complete_json_many([request([view]) for view, _ in missing])
    for (view, _), result in zip(missing, retries):
        idx = view["sample_idx"]
        item = _found_in(usable_items(result), [idx]).get(idx)
        done[idx] = _analysis(selected[idx], idx, item) if item else _failed(selected[idx], idx, result)
    for view, result in gave_up:
        done[view["sample_idx"]] = _failed(selected[view["sample_idx"]], view["sample_idx"], result)
    return [done[i] for i in sorted(done)]


def _found_in(items: list[AnalysisItem], expected: list[int]) -> dict[int, AnalysisItem]:
    """`match_items`, plus one leniency for a one-failure request: its only entry counts whatever
    number it carries (nothing else is shown; small models often renumber from 0 or 1)."""
    found = match_items(items, expected)
    if len(expected) == 1 and not found and len(items) == 1:
        found[expected[0]] = items[0]
    return found

"""Strategy drafting stage: one data-generation strategy per error pattern.

For each pattern the LLM returns `strategy_name`, `generation_approach` and `key_elements`
(the paper's fields; `category_name` is copied from the pattern). Strategies must be
actionable by the generator LLM and differ from each other, so each prompt lists the other
patterns and, when drafting in sequence (the default), the strategies already written.
Repeated strategy names are made distinct afterwards.

A failed call gives a generic but usable strategy built from the pattern, with
`generation_approach` starting "(strategy call failed)", `ok=False` and the raw reply.

Cost: one LLM call per pattern (K calls); sequential by default, concurrent with
`sequential=False` (faster against an API, but strategies cannot see each other).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from pada.agents.patterns import FAILED_MARK as PATTERN_FAILED_MARK
from pada.agents.patterns import unique_names
from pada.llm import JSONRequest, LLMClient
from pada.llm.prompts import render
from pada.records import Message, Pattern, Strategy

STAGE = "strategies"
PROMPT = "strategies"  # pada/llm/prompts/strategies.jinja2
FAILED_MARK = "(strategy call failed)"
_COPIED_SUFFIX = re.compile(r"\s*\(for [^)]*\)$")


@dataclass
class StrategyConfig:
    """Settings for `draft_strategies`."""

    sequential: bool = field(
        default=True,
        metadata={"help": "Draft one pattern after another, showing the strategies written so far, so "
                  "later ones differ from them (paper: strategies must be distinct). False sends all "
                  "calls at once."},
    )
    max_key_elements: int = field(
        default=5, metadata={"help": "Most key_elements asked for and kept per strategy."}
    )
    temperature: float = field(default=0.0, metadata={"help": "Paper: 0 for all analysis calls."})

    def __post_init__(self) -> None:
        if self.max_key_elements < 1:
            raise ValueError(f"max_key_elements must be >= 1, got {self.max_key_elements}")


class StrategyReply(BaseModel):
    strategy_name: str = Field(min_length=1)
    generation_approach: str = Field(min_length=1)
    key_elements: list[str] = Field(min_length=1, max_length=8)


def strategy_messages(
    target: Pattern,
    patterns: list[Pattern],
    drafted: list[Strategy],
    config: StrategyConfig,
    task_description: str = "",
) -> list[Message]:
    """The chat messages for one pattern (also the UI's prompt preview)."""
    def shown(pattern: Pattern) -> dict:
        return {"category_name": pattern.category_name, "error_pattern": _pattern_text(pattern)}

    return render(
        PROMPT,
        target=shown(target),
        others=[shown(p) for p in patterns if p is not target],
        drafted=[s.model_dump() for s in drafted],
        max_elements=config.max_key_elements,
        task_description=task_description,
    )


def _pattern_text(pattern: Pattern) -> str:
    """The pattern description without the failed-call marker (the LLM needs the content only)."""
    return pattern.error_pattern.removeprefix(PATTERN_FAILED_MARK).strip()


def fallback_strategy(pattern: Pattern, raw: str | None) -> Strategy:
    """A generic strategy for a pattern whose call failed: still usable by the generator."""
    return Strategy(
        cluster_id=pattern.cluster_id,
        category_name=pattern.category_name,
        strategy_name=f"Targeted practice: {pattern.category_name}",
        generation_approach=(f"{FAILED_MARK} Write new examples in the original's format that make the model "
                             f"practise this weakness: {_pattern_text(pattern)}"),
        key_elements=[
            "keeps the original example's format",
            f"a situation of the kind '{pattern.category_name}'",
            "a correct, complete answer",
        ],
        ok=False,
        raw=raw,
    )


def _strategy(pattern: Pattern, result, config: StrategyConfig) -> Strategy:
    if not (result.ok and result.value is not None):
        return fallback_strategy(pattern, result.raw or f"(no reply: {result.error or 'unknown error'})")
    reply = result.value
    elements = [e.strip() for e in reply.key_elements if e.strip()]
    return Strategy(
        cluster_id=pattern.cluster_id,
        category_name=pattern.category_name,
        strategy_name=reply.strategy_name.strip(),
        generation_approach=reply.generation_approach.strip(),
        key_elements=list(dict.fromkeys(elements))[: config.max_key_elements],
    )


def distinct_names(strategies: list[Strategy]) -> None:
    """Rename repeated strategy names in place: first 'Name (category)', then numbered if still equal.

    Generated samples record `based_on_strategy` by name, so names must be unique.
    """
    seen: set[str] = set()
    for strategy in strategies:
        # The prompt lists earlier strategies as "name (for category)"; a copied line is a repeat too.
        base = _COPIED_SUFFIX.sub("", strategy.strategy_name).strip() or strategy.strategy_name
        if base.casefold() in seen:
            strategy.strategy_name = f"{base} ({strategy.category_name})"
        seen.add(base.casefold())
        seen.add(strategy.strategy_name.casefold())
    for strategy, name in zip(strategies, unique_names([s.strategy_name for s in strategies])):
        strategy.strategy_name = name


def draft_strategies(
    patterns: list[Pattern],
    llm: LLMClient,
    config: StrategyConfig | None = None,
    task_description: str = "",
) -> list[Strategy]:
    """One strategy per pattern, in the patterns' order (`llm` is a `pada.llm.LLMClient`)."""
    config = config or StrategyConfig()

    def request(pattern: Pattern, drafted: list[Strategy]) -> JSONRequest:
        return JSONRequest(messages=strategy_messages(pattern, patterns, drafted, config, task_description),
                           schema=StrategyReply, stage=STAGE, temperature=config.temperature)

    strategies: list[Strategy] = []
    if config.sequential:
        for pattern in patterns:
            result = llm.complete_json_many([request(pattern, strategies)])[0]
            strategies.append(_strategy(pattern, result, config))
    else:
        results = llm.complete_json_many([request(p, []) for p in patterns])
        strategies = [_strategy(p, r, config) for p, r in zip(patterns, results)]
    distinct_names(strategies)
    return strategies

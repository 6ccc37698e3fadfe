"""Pattern categorisation stage: one LLM call per cluster names the error pattern it shows.

Per cluster the LLM sees the cluster's error analyses (up to `max_analyses_shown`) and a
few of its failures, and returns the paper's fields `category_name`, `error_pattern` and
`representative_samples`.

`representative_samples`: the prompt numbers every sample (`sample_idx`), the LLM answers
with those numbers, and the stored `Pattern.representative_samples` holds the matching
failure ids, so the dashboard can link to the failures. Numbers that are not in the
cluster are dropped; if none are left, the first samples shown are used.

A failed call never stops the loop: the pattern is built from the cluster's most common
`scenario_category` and cause, with `error_pattern` starting "(pattern call failed)"
and `ok=False`, `raw=<reply>`.

Cost: one LLM call per cluster (K calls), sent concurrently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from pada.agents.error_analysis import failure_view
from pada.llm import JSONRequest, LLMClient
from pada.llm.prompts import render
from pada.records import ClusteringResult, ErrorAnalysis, Failure, Message, Pattern

STAGE = "patterns"
PROMPT = "patterns"  # pada/llm/prompts/patterns.jinja2
FAILED_MARK = "(pattern call failed)"


@dataclass
class PatternConfig:
    """Settings for `categorise_patterns`: how much of each cluster the LLM sees."""

    max_analyses_shown: int = field(
        default=25,
        metadata={"help": "Analyses listed per cluster; with 50 failures a cluster rarely has more, and "
                  "this bounds the prompt for small models."},
    )
    max_failures_shown: int = field(
        default=3,
        metadata={"help": "Full failures (query, response, ground truth) shown per cluster, so the LLM "
                  "sees real examples and not only explanations."},
    )
    max_representatives: int = field(
        default=3, metadata={"help": "Most representative_samples asked for and kept per pattern."}
    )
    max_field_chars: int = field(
        default=800,
        metadata={"help": "Each shown failure field is cut to this many characters (head and tail kept)."},
    )
    temperature: float = field(default=0.0, metadata={"help": "Paper: 0 for all analysis calls."})

    def __post_init__(self) -> None:
        if self.max_analyses_shown < 1 or self.max_representatives < 1:
            raise ValueError("max_analyses_shown and max_representatives must be >= 1")
        if self.max_failures_shown < 0:
            raise ValueError(f"max_failures_shown must be >= 0, got {self.max_failures_shown}")


class PatternReply(BaseModel):
    category_name: str = Field(min_length=1)
    error_pattern: str = Field(min_length=1)
    representative_samples: list[int] = Field(default_factory=list, max_length=5)  # may be empty: first members are used


def cluster_members(clustering: ClusteringResult, analyses: list[ErrorAnalysis]) -> dict[int, list[ErrorAnalysis]]:
    """The analyses of each cluster, in cluster-id order and, within a cluster, by sample_idx."""
    by_id = {a.failure_id: a for a in analyses}
    members: dict[int, list[ErrorAnalysis]] = {}
    for point in sorted(clustering.points, key=lambda p: p.cluster_id):
        if point.failure_id in by_id:
            members.setdefault(point.cluster_id, []).append(by_id[point.failure_id])
    return {cid: sorted(group, key=lambda a: a.sample_idx) for cid, group in members.items()}


def pattern_messages(
    cluster_id: int,
    members: list[ErrorAnalysis],
    failures_by_id: dict[str, Failure],
    config: PatternConfig,
    task_description: str = "",
) -> list[Message]:
    """The chat messages for one cluster (also the UI's prompt preview)."""
    shown = members[: config.max_analyses_shown]
    with_failure = [a for a in shown if a.failure_id in failures_by_id][: config.max_failures_shown]
    return render(
        PROMPT,
        cluster_id=cluster_id,
        analyses=[a.model_dump() for a in shown],
        total=len(members),
        failures=[failure_view(failures_by_id[a.failure_id], a.sample_idx, config.max_field_chars)
                  for a in with_failure],
        max_samples=config.max_representatives,
        task_description=task_description,
    )


def representative_ids(numbers: list[int], members: list[ErrorAnalysis], limit: int) -> list[str]:
    """Failure ids for the sample numbers the LLM picked, keeping only members of the cluster."""
    by_idx = {a.sample_idx: a.failure_id for a in members}
    ids = list(dict.fromkeys(by_idx[n] for n in numbers if n in by_idx))
    return ids[:limit] or [a.failure_id for a in members[:limit]]


def fallback_pattern(cluster_id: int, members: list[ErrorAnalysis], limit: int, raw: str | None) -> Pattern:
    """A pattern built without the LLM: most common scenario and cause, clearly marked as failed."""
    category = _most_common([a.scenario_category for a in members]) or f"Cluster {cluster_id}"
    cause = _most_common([a.error_cause for a in members]) or "no explanation available"
    return Pattern(
        cluster_id=cluster_id,
        category_name=category,
        error_pattern=f"{FAILED_MARK} {len(members)} failures, most often: {cause}",
        representative_samples=[a.failure_id for a in members[:limit]],
        ok=False,
        raw=raw,
    )


def _most_common(values: list[str | None]) -> str | None:
    """Most frequent non-empty value; ties go to the one seen first (Counter keeps insertion order)."""
    counts = Counter(v.strip() for v in values if v and v.strip())
    return counts.most_common(1)[0][0] if counts else None


def unique_names(names: list[str]) -> list[str]:
    """Make names distinct (case-insensitively) by numbering repeats: 'X', 'X (2)', ..."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate.casefold() in seen:
            n += 1
            candidate = f"{name} ({n})"
        seen.add(candidate.casefold())
        out.append(candidate)
    return out


def categorise_patterns(
    clustering: ClusteringResult,
    analyses: list[ErrorAnalysis],
    failures: list[Failure],
    llm: LLMClient,
    config: PatternConfig | None = None,
    task_description: str = "",
) -> list[Pattern]:
    """Name the error pattern of every cluster (`llm` is a `pada.llm.LLMClient`).

    Returns one `Pattern` per cluster, ordered by cluster id, with distinct category names.
    """
    config = config or PatternConfig()
    members = cluster_members(clustering, analyses)
    failures_by_id = {f.id: f for f in failures}
    requests = [
        JSONRequest(messages=pattern_messages(cid, group, failures_by_id, config, task_description),
                    schema=PatternReply, stage=STAGE, temperature=config.temperature)
        for cid, group in members.items()
    ]
    patterns = []
    for (cid, group), result in zip(members.items(), llm.complete_json_many(requests)):
        if not (result.ok and result.value is not None):
            raw = result.raw or f"(no reply: {result.error or 'unknown error'})"
            patterns.append(fallback_pattern(cid, group, config.max_representatives, raw))
            continue
        reply = result.value
        patterns.append(Pattern(
            cluster_id=cid,
            category_name=reply.category_name.strip(),
            error_pattern=reply.error_pattern.strip(),
            representative_samples=representative_ids(reply.representative_samples, group,
                                                      config.max_representatives),
        ))
    for pattern, name in zip(patterns, unique_names([p.category_name for p in patterns])):
        pattern.category_name = name
    return patterns

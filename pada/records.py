"""Typed records that flow between the stages of PaDA-Agent.

Data flows one way:
    Example -> Prediction / Failure -> ErrorAnalysis -> ClusteringResult
    -> Pattern -> Strategy -> SyntheticSample -> QCResult -> training set

Field names follow the paper (`error_cause`, `scenario_category`,
`based_on_strategy`, ...) so that prompts, stored records and the dashboard all
speak the same language. Every record is a pydantic model so the run store can
persist it as JSON and validate it when it is read back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": str}


def user_turn(messages: list[Message]) -> str:
    """The first user turn of a conversation (the question), or ''."""
    return next((m["content"] for m in messages if m.get("role") == "user"), "")


class Example(BaseModel):
    """One benchmark item, already formatted for the SLM.

    `prompt` is the user turn the SLM sees; `answer` is the reference assistant
    turn used as the training target. `gold` holds what the task's scorer needs
    (option label, accepted answers, unit tests, ...).
    """

    id: str
    task: str
    source_split: str
    prompt: str
    answer: str
    gold: dict[str, Any] = Field(default_factory=dict)

    def messages(self, with_answer: bool = True) -> list[Message]:
        turns = [{"role": "user", "content": self.prompt}]
        if with_answer:
            turns.append({"role": "assistant", "content": self.answer})
        return turns


class Score(BaseModel):
    """A scorer's verdict on one prediction."""

    correct: bool
    extracted: str | None = None  # what the scorer read out of the prediction
    metrics: dict[str, float] = Field(default_factory=dict)  # e.g. SQuAD's exact_match and f1
    detail: str | None = None  # e.g. the sandbox's error output for code


class Prediction(BaseModel):
    """The SLM's answer to one example, with its score."""

    id: str
    split: str
    prediction: str
    extracted: str | None = None
    correct: bool
    metrics: dict[str, float] = Field(default_factory=dict)


class Failure(BaseModel):
    """A (input, ground truth, prediction) triple where the SLM was wrong."""

    id: str
    split: str
    input: str
    ground_truth: str
    prediction: str
    extracted: str | None = None


class ErrorAnalysis(BaseModel):
    """The analysis LLM's explanation of one validation failure.

    `ok` is False when the call never produced a valid analysis; the raw text
    is kept in `raw` so nothing is lost.
    """

    failure_id: str
    sample_idx: int
    error_cause: str | None = None
    scenario_category: str | None = None
    ok: bool = True
    raw: str | None = None

    def text(self) -> str:
        """The text that is embedded for clustering."""
        return f"{self.error_cause or ''} Scenario: {self.scenario_category or ''}".strip()


class ClusterPoint(BaseModel):
    failure_id: str
    cluster_id: int
    x: float  # 2-D UMAP coordinates for the dashboard
    y: float
    # The analysis's unit-length embedding the clustering used (set by the clustering stage). The store keeps it
    # apart (`RunStore.cluster_vectors`), so the points pages read stay small; left out of JSON for the same reason.
    vector: list[float] | None = Field(default=None, exclude=True, repr=False)


class ClusteringResult(BaseModel):
    k: int
    inertia_curve: list[tuple[int, float]] = Field(default_factory=list)  # (K, inertia) per K tried
    points: list[ClusterPoint] = Field(default_factory=list)
    embedder: str = ""

    def members(self, cluster_id: int) -> list[str]:
        return [p.failure_id for p in self.points if p.cluster_id == cluster_id]


class Pattern(BaseModel):
    cluster_id: int
    category_name: str
    error_pattern: str
    representative_samples: list[str] = Field(default_factory=list)  # failure ids
    ok: bool = True  # False when the LLM call failed and the pattern was built without it
    raw: str | None = None  # the failed call's reply, kept so nothing is lost


class Strategy(BaseModel):
    cluster_id: int
    category_name: str
    strategy_name: str
    generation_approach: str
    key_elements: list[str] = Field(default_factory=list)
    ok: bool = True  # False when the LLM call failed and a generic strategy was built instead
    raw: str | None = None  # the failed call's reply, kept so nothing is lost
    # A person wrote it before generation (no cluster produced it; `RunStore.add_written_strategy`).
    # On the record, not only in the version history, so every view and export can tell it apart.
    hand_written: bool = False


Branch = Literal["pattern", "error", "rephrase"]


class SyntheticSample(BaseModel):
    sample_id: str
    is_synthetic: bool = True
    branch: Branch
    based_on_strategy: str | None = None  # strategy_name; None for the error and rephrase branches
    based_on_example: str  # id of the training example it was derived from
    messages: list[Message]
    attempt: int = 1  # 1 for the first generation, +1 per QC regeneration

    @property
    def question(self) -> str:
        return user_turn(self.messages)

    @property
    def answer(self) -> str:
        return next((m["content"] for m in self.messages if m["role"] == "assistant"), "")


class QCResult(BaseModel):
    sample_id: str
    attempt: int
    adherence: int | None = None  # pattern branch only
    utility: int | None = None
    relevance: int | None = None
    average: float | None = None
    feedback: str = ""
    passed: bool = False
    ok: bool = True  # False when the judge's call failed
    raw: str | None = None
    judge_answer: str | None = None  # the answer check: the judge's own answer to the question
    answer_agrees: bool | None = None  # whether the sample's answer agrees with it (None: not checked)


class LLMCall(BaseModel):
    """Accounting for one request made through the LLM client."""

    stage: str
    model: str
    request_hash: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cache_hit: bool = False
    ok: bool = True
    attempts: int = 1
    error: str | None = None

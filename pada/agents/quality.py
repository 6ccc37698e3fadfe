"""Quality control: a judge LLM scores synthetic samples; weak batches are regenerated.

The paper has a separate judge model (so the generator does not grade itself)
score each synthetic sample against the training example it came from, 1-10,
on adherence to the strategy (pattern branch only), training utility and
relevance to the original's format and style, with feedback. A batch whose
mean score is below the threshold (7) is regenerated with that feedback, at
most 3 times.

Here:
- one judge call scores one whole generation batch (cost: one call per batch
  per attempt); all pending batches of a round are judged concurrently;
- a sample's average is the mean of the scores that apply to it; a batch
  passes when every sample got a score and the mean of their averages is
  >= threshold; a failed judge call (or a sample it skipped) gives
  `QCResult(ok=False)` and counts as not passing;
- generation is a callable, so the same loop serves every branch:
  `run_qc_loop(generate_batch(feedback | None, attempt) -> samples, ...)` for
  one batch, `run_qc_rounds` for many at once (concurrent calls per round);
- after the last attempt, the final attempt's samples whose own average is
  >= threshold are accepted; the others are rejected. Every attempt and every
  score is returned, nothing is thrown away.

The answer check (beyond the paper; `answer_check`): where the task's sample form can compare two answers
(SQuAD spans by token F1, option letters), the judge is also asked, in one more call per context in the
batch (sent with the scoring calls), to answer the questions itself without seeing their answers. A sample
whose answer disagrees with the judge's is not accepted, whatever its scores, and the judge's answer goes
into its feedback. Why: measured with benchmarks/bench_judge.py on SQuAD, both bundled judges scored every
planted bad sample (a wrong span, a non-span, a mismatched question) 8-10 like the real ones, so scores
alone let every wrong answer through; answering a question from its paragraph is a task they can do. The
batch rule above (mean score) still alone decides regeneration, so the check costs no extra generation.

After the judge, `unfit_samples` names the accepted samples training must not
get anyway: format breakers, repeats and near copies (a weak judge passes them).

`QCResult.passed` means "this sample's own average reached the threshold (and, where the judge answered
it, its answer agreed)"; a
sample with passed=True in a superseded attempt was still discarded because
its batch was regenerated. `QCOutcome.accepted` is the authority.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from statistics import fmean
from typing import Annotated, Callable

from pydantic import BaseModel, BeforeValidator, Field, create_model

from pada.agents.text import truncate
from pada.records import Example, QCResult, Strategy, SyntheticSample
from pada.tasks.forms import SampleForm

STAGE = "quality"
PROMPT = "quality"  # pada/llm/prompts/quality.jinja2
ANSWER_PROMPT = "answer_check"  # pada/llm/prompts/answer_check.jinja2


@dataclass
class QCConfig:
    """Settings for the quality-control loop."""

    threshold: float = field(default=7.0, metadata={"help": "Paper: a batch whose mean score is below 7 is regenerated; a sample needs 7 to be accepted."})
    max_regenerations: int = field(default=3, metadata={"help": "Paper: at most 3 regenerations, so at most 4 attempts per batch."})
    temperature: float = field(default=0.0, metadata={"help": "Paper: temperature 0 for every call except generation."})
    qc_disabled: bool = field(default=False, metadata={"help": "Ablation 'without quality control': accept every sample without calling the judge (still recorded)."})
    max_field_chars: int = field(default=1500, metadata={"help": "Questions and answers shown to the judge are cut to this many characters so a batch fits a small model's window."})
    canaries: int = field(default=6, metadata={"help": "Planted samples slipped into each QC stage's first-round judge batches to check the judge (pada/agents/canaries.py; beyond the paper): a third are real training examples it should accept (6 = 4 bad + 2 controls). Their verdicts are recorded (catch rate in `pada status` and the dashboard) and never enter training or the sample counts. 0: none."})
    answer_check: bool = field(default=True, metadata={"help": "Beyond the paper: where the task's answers can be compared in code (SQuAD spans, option letters), the judge also answers each sample's question without seeing its answer (one more call per context in a batch), and a sample it disagrees with is rejected. false: scores alone decide, as in the paper."})
    max_similarity: float = field(default=0.9, metadata={"help": "After QC, a pattern or error sample whose question shares more than this fraction of its words (Jaccard) with a training question or an earlier sample is dropped as a near copy (small generators often return the example); rephrasings only need to differ. 1.0: drop exact repeats only."})

    def __post_init__(self) -> None:
        if not 1.0 <= self.threshold <= 10.0:
            raise ValueError(f"threshold must be within [1, 10] (scores are 1-10), got {self.threshold}")
        if not 0.0 < self.max_similarity <= 1.0:
            raise ValueError(f"max_similarity must be within (0, 1], got {self.max_similarity}")
        if self.canaries < 0:
            raise ValueError(f"canaries must be >= 0 (0 plants none), got {self.canaries}")
        if self.max_regenerations < 0:
            raise ValueError(f"max_regenerations must be >= 0, got {self.max_regenerations}")


# ---------------------------------------------------------------------------
# What the judge returns


def _clamp_score(value):
    """Small models sometimes answer 0, 11 or 7.5: bring numbers into 1..10 instead of failing the call."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return min(10, max(1, round(value)))
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return min(10, max(1, round(float(value))))
    return value


# Field before the validator, or pydantic writes "ge"/"le" instead of minimum/maximum into the schema.
Score10 = Annotated[int, Field(ge=1, le=10), BeforeValidator(_clamp_score)]


class SampleJudgement(BaseModel):
    sample_idx: int
    feedback: str = ""
    utility: Score10
    relevance: Score10


class StrategySampleJudgement(BaseModel):
    sample_idx: int
    feedback: str = ""
    adherence: Score10
    utility: Score10
    relevance: Score10


class JudgeAnswer(BaseModel):
    sample_idx: int
    answer: str


@lru_cache(maxsize=None)
def answers_schema(count: int) -> type[BaseModel]:
    """`{"answers": [JudgeAnswer] * count}`: the judge's own answers to the questions asked of one context."""
    return create_model("JudgeAnswers", answers=(list[JudgeAnswer], Field(min_length=count, max_length=count)))


@lru_cache(maxsize=None)
def judge_schema(count: int, with_strategy: bool) -> type[BaseModel]:
    """`{"scores": [item] * count}`; the exact count helps constrained decoding (MEASURED.md section 4).
    Class names `JudgeScores` / `JudgeScoresWithStrategy` are the schema names a server sees in `response_format`."""
    item = StrategySampleJudgement if with_strategy else SampleJudgement
    name = "JudgeScoresWithStrategy" if with_strategy else "JudgeScores"
    return create_model(name, scores=(list[item], Field(min_length=count, max_length=count)))


# ---------------------------------------------------------------------------
# Loop inputs and outputs


@dataclass
class QCBatch:
    """What the judge needs about one generation batch: the training example it came from and,
    for the pattern branch, the strategy it had to follow."""

    original: Example
    strategy: Strategy | None = None
    form: SampleForm | None = None  # the task's sample form: samples that keep the original's context show it once


@dataclass
class QCOutcome:
    accepted: list[SyntheticSample] = field(default_factory=list)
    rejected: list[SyntheticSample] = field(default_factory=list)  # final attempt, below threshold or unjudged
    attempts: list[SyntheticSample] = field(default_factory=list)  # every sample of every attempt
    qc_results: list[QCResult] = field(default_factory=list)  # one per sample per attempt
    attempts_per_batch: list[int] = field(default_factory=list)
    canaries: list = field(default_factory=list)  # CanaryVerdicts of the planted samples (never in the above)


# generate(requests, attempt) -> one list of samples per request; a request is (batch_index, feedback).
RoundGenerator = Callable[[list[tuple[int, str | None]], int], list[list[SyntheticSample]]]
BatchGenerator = Callable[[str | None, int], list[SyntheticSample]]


# ---------------------------------------------------------------------------
# Judging


def judge_messages(batch: QCBatch, samples: list[SyntheticSample], max_chars: int = 1500) -> list[dict]:
    """The judge's chat messages for one batch (also the UI's prompt preview)."""
    from pada.llm.prompts import render

    shown = [{"question": truncate(shown_question(batch, s.question), max_chars),
              "answer": truncate(s.answer, max_chars)} for s in samples]
    return render(PROMPT, original=batch.original, strategy=batch.strategy, samples=shown)


SAME_CONTEXT = "[the original's context paragraph, unchanged]"


def shown_question(batch: QCBatch, question: str) -> str:
    """A sample's user turn as the judge sees it: a context it shares with the original is not repeated.

    A SQuAD sample keeps its original's paragraph (`SampleForm.new_part`); showing it once per sample made
    the judge's prompts about three times longer (prompt reading is most of a local judge's time) and told
    it nothing new. A sample on any other context is shown whole."""
    if batch.form is None:
        return question
    kept, written = batch.form.new_part(question)
    if kept and kept == batch.form.new_part(batch.original.prompt)[0]:
        return f"{SAME_CONTEXT}\nQuestion: {written}"
    return question


def answer_groups(form: SampleForm, samples: list[SyntheticSample]) -> dict[str, list[int]]:
    """Sample positions by the context their question keeps ("" for forms without one), in order.

    Measured (bench_judge, SQuAD, the 0.5B): with three questions on three paragraphs in one prompt the
    judge answered them from the wrong paragraphs (1 of 12 controls agreed); one call per context keeps
    each question beside its own paragraph, and a batch's generated samples all share their original's."""
    groups: dict[str, list[int]] = {}
    for pos, sample in enumerate(samples):
        groups.setdefault(form.new_part(sample.question)[0], []).append(pos)  # "" unless the form keeps one
    return groups


def answer_messages(form: SampleForm, context: str, questions: list[str], max_chars: int = 1500) -> list[dict]:
    """The answer check's chat messages: the questions asked of one context (shown once), never the
    samples' answers. `questions`: the user turns; under a context, only their new part is shown."""
    from pada.llm.prompts import render

    shown = [truncate(form.new_part(question)[1] if context else question, max_chars) for question in questions]
    return render(ANSWER_PROMPT, context=truncate(context, max_chars * 2), questions=shown, rule=form.answer_rule)


def checks_answers(batch: QCBatch, config: QCConfig) -> bool:
    return config.answer_check and batch.form is not None and batch.form.answers_agree is not None


def usable_items(result, key: str, item: type[BaseModel]) -> list[BaseModel]:
    """The items under `key` in a reply: the validated value or, when validation failed (wrong count,
    one bad item), every item of the raw text that validates on its own."""
    if result.ok and result.value is not None:
        return list(getattr(result.value, key))
    from pada.llm.jsonparse import salvage_items

    return salvage_items(result.raw, key, item)


def match_judgements(items: list[BaseModel], count: int) -> dict[int, BaseModel]:
    """Judgements by 0-based sample position. The prompt numbers samples from 1; a reply numbered
    0..count-1 is read as 0-based; duplicates keep the first; exactly `count` items whose numbers
    do not add up are read in order (small models renumber)."""
    indices = [item.sample_idx for item in items]
    offset = 0 if sorted(set(indices)) == list(range(count)) else 1
    found: dict[int, BaseModel] = {}
    for item in items:
        pos = item.sample_idx - offset
        if 0 <= pos < count and pos not in found:
            found[pos] = item
    if len(found) < count and len(items) == count:
        return dict(enumerate(items))  # one item per sample but garbled numbers: read them in order
    return found


def _score_result(sample: SyntheticSample, attempt: int, item, threshold: float) -> QCResult:
    adherence = getattr(item, "adherence", None)
    scores = [s for s in (adherence, item.utility, item.relevance) if s is not None]
    average = fmean(scores)
    return QCResult(sample_id=sample.sample_id, attempt=attempt, adherence=adherence, utility=item.utility,
                    relevance=item.relevance, average=average, feedback=item.feedback.strip(),
                    passed=average >= threshold)


def _failed_result(sample: SyntheticSample, attempt: int, why: str, raw: str | None) -> QCResult:
    return QCResult(sample_id=sample.sample_id, attempt=attempt, feedback=why, passed=False, ok=False, raw=raw)


def read_judgement(samples: list[SyntheticSample], attempt: int, result, with_strategy: bool,
                   threshold: float) -> list[QCResult]:
    """One QCResult per sample from one judge reply; samples it failed to score get ok=False."""
    item = StrategySampleJudgement if with_strategy else SampleJudgement
    found = match_judgements(usable_items(result, "scores", item), len(samples))
    out = []
    for pos, sample in enumerate(samples):
        if pos in found:
            out.append(_score_result(sample, attempt, found[pos], threshold))
        elif not found:
            why = f"judge call failed: {result.error or 'no usable reply'}"
            out.append(_failed_result(sample, attempt, why, result.raw))
        else:
            why = "the judge returned no score for this sample" + (f" ({result.error})" if result.error else "")
            out.append(_failed_result(sample, attempt, why, result.raw))
    return out


def apply_answers(samples: list[SyntheticSample], results: list[QCResult], reply, form: SampleForm
                  ) -> list[QCResult]:
    """`results` with the judge's own answers (one answer call's `reply` for these samples): a sample whose
    answer disagrees with the judge's does not pass, and its feedback says what the judge answered. A sample
    the judge gave no answer keeps its scores' verdict (`answer_agrees` None): a failed call costs the check only."""
    found = match_judgements(usable_items(reply, "answers", JudgeAnswer), len(samples))
    out = []
    for pos, (sample, result) in enumerate(zip(samples, results)):
        if pos not in found:
            out.append(result)
            continue
        answer = found[pos].answer.strip()
        agrees = form.answers_agree(sample.answer, answer)
        update = {"judge_answer": answer, "answer_agrees": agrees}
        if not agrees:
            said = f"The judge's own answer is {truncate(answer, 120)!r}, not {truncate(sample.answer, 120)!r}."
            update |= {"passed": False, "feedback": f"{said} {result.feedback}".strip()}
        out.append(result.model_copy(update=update))
    return out


def judge_batches(judge, batches: list[QCBatch], samples: list[list[SyntheticSample]], attempt: int,
                  config: QCConfig) -> list[list[QCResult]]:
    """Score each batch with one judge call and, with the answer check, have the judge answer its questions
    (one more call per context in the batch); all calls concurrent. Empty batches get no call."""
    from pada.llm import JSONRequest

    todo = [i for i, batch_samples in enumerate(samples) if batch_samples]
    requests = [JSONRequest(messages=judge_messages(batches[i], samples[i], config.max_field_chars),
                            schema=judge_schema(len(samples[i]), batches[i].strategy is not None),
                            stage=STAGE, temperature=config.temperature)
                for i in todo]
    asked: list[tuple[int, list[int]]] = []  # (batch, sample positions) of each answer call
    for i in (i for i in todo if checks_answers(batches[i], config)):
        form = batches[i].form
        for context, positions in answer_groups(form, samples[i]).items():
            questions = [samples[i][pos].question for pos in positions]
            requests.append(JSONRequest(messages=answer_messages(form, context, questions, config.max_field_chars),
                                        schema=answers_schema(len(positions)), stage=STAGE,
                                        temperature=config.temperature))
            asked.append((i, positions))
    replies = judge.complete_json_many(requests) if requests else []
    out: list[list[QCResult]] = [[] for _ in samples]
    for i, reply in zip(todo, replies):
        out[i] = read_judgement(samples[i], attempt, reply, batches[i].strategy is not None, config.threshold)
    for (i, positions), reply in zip(asked, replies[len(todo):]):
        checked = apply_answers([samples[i][pos] for pos in positions], [out[i][pos] for pos in positions],
                                reply, batches[i].form)
        for pos, result in zip(positions, checked):
            out[i][pos] = result
    return out


# ---------------------------------------------------------------------------
# The loop


def batch_passes(results: list[QCResult], threshold: float) -> bool:
    """A batch passes when it has samples, all were scored, and the mean of their averages >= threshold."""
    if not results or not all(r.ok and r.average is not None for r in results):
        return False
    return fmean(r.average for r in results) >= threshold


def feedback_text(samples: list[SyntheticSample], results: list[QCResult], max_chars: int = 160) -> str:
    """What the generator is told before it retries: per sample, the start of its question, its score
    and the judge's feedback."""
    if not samples:
        return "The previous attempt produced no usable examples in the requested format."
    lines = []
    for pos, (sample, result) in enumerate(zip(samples, results), start=1):
        score = f"{result.average:.1f}/10" if result.average is not None else "not scored"
        question = truncate(" ".join(sample.question.split()), max_chars)
        note = result.feedback or "no feedback"
        lines.append(f'{pos}. "{question}" scored {score}: {note}')
    return "\n".join(lines)


def _accept_all(samples: list[SyntheticSample]) -> list[QCResult]:
    return [QCResult(sample_id=s.sample_id, attempt=s.attempt, passed=True,
                     feedback="quality control disabled: accepted without judging") for s in samples]


def run_qc_rounds(generate: RoundGenerator, batches: list[QCBatch], judge, config: QCConfig | None = None,
                  planter=None) -> QCOutcome:
    """Generate, judge and regenerate many batches in lock-step rounds.

    Round r (attempt r): every batch still pending is generated (one `generate` call with all of
    them, so the branch can send its requests concurrently), then judged (concurrently). Batches
    below the threshold go to the next round with their feedback, until `max_regenerations`.
    With a `planter` (`pada.agents.canaries.CanaryPlanter`), the first round's judge batches also get
    planted samples; their verdicts go to `outcome.canaries` only and never decide a batch's fate, so
    no regeneration is asked for (or of) them.
    Cost: up to (1 + max_regenerations) generation and judge calls per batch.
    """
    config = config or QCConfig()
    outcome = QCOutcome(attempts_per_batch=[0] * len(batches))
    last_samples: list[list[SyntheticSample]] = [[] for _ in batches]
    last_results: list[list[QCResult]] = [[] for _ in batches]
    pending: list[tuple[int, str | None]] = [(i, None) for i in range(len(batches))]
    max_attempts = 1 if config.qc_disabled else 1 + config.max_regenerations
    for attempt in range(1, max_attempts + 1):
        if not pending:
            break
        generated = generate(pending, attempt)
        indices = [i for i, _ in pending]
        for i, samples in zip(indices, generated):
            samples = [s.model_copy(update={"attempt": attempt}) for s in samples]
            last_samples[i] = samples
            outcome.attempts.extend(samples)
            outcome.attempts_per_batch[i] = attempt
        if config.qc_disabled:
            results = [_accept_all(last_samples[i]) for i in indices]
        else:
            results = _judge_with_canaries(judge, [batches[i] for i in indices], [last_samples[i] for i in indices],
                                           attempt, config, planter if attempt == 1 else None, outcome)
        pending = []
        for i, batch_results in zip(indices, results):
            last_results[i] = batch_results
            outcome.qc_results.extend(batch_results)
            if not config.qc_disabled and not batch_passes(batch_results, config.threshold):
                pending.append((i, feedback_text(last_samples[i], batch_results)))
    for samples, results in zip(last_samples, last_results):
        for sample, result in zip(samples, results):
            (outcome.accepted if result.passed else outcome.rejected).append(sample)
    return outcome


def _judge_with_canaries(judge, batches: list[QCBatch], samples: list[list[SyntheticSample]], attempt: int,
                         config: QCConfig, planter, outcome: QCOutcome) -> list[list[QCResult]]:
    """`judge_batches`, with the planter's samples mixed in and their verdicts split off into `outcome`."""
    if planter is None:
        return judge_batches(judge, batches, samples, attempt, config)
    from pada.agents.canaries import mix, record

    planted = planter.plant(batches, samples)
    mixed = [mix(batch_samples, batch_planted) for batch_samples, batch_planted in zip(samples, planted)]
    judged = judge_batches(judge, batches, mixed, attempt, config)
    results = []
    for batch_planted, shown, batch_results in zip(planted, mixed, judged):
        verdicts = {sample.sample_id: verdict for _, sample, verdict in batch_planted}
        real = []
        for sample, result in zip(shown, batch_results):
            if sample.sample_id in verdicts:
                outcome.canaries.append(record(verdicts[sample.sample_id], result))
            else:
                real.append(result)
        results.append(real)
    return results


def run_qc_loop(generate_batch: BatchGenerator, batch: QCBatch, judge, config: QCConfig | None = None
                ) -> QCOutcome:
    """The QC loop for one batch: `generate_batch(feedback | None, attempt) -> samples`."""
    def generate(requests: list[tuple[int, str | None]], attempt: int) -> list[list[SyntheticSample]]:
        return [generate_batch(feedback, attempt) for _, feedback in requests]

    return run_qc_rounds(generate, [batch], judge, config)


# ---------------------------------------------------------------------------
# Checks after the judge


def unfit_samples(task, train_examples: list[Example], samples: list[SyntheticSample],
                  max_similarity: float = 1.0) -> dict[str, list[str]]:
    """Accepted sample ids a weak judge may pass but training must not get, by reason: the
    question/answer break the task's format (`task.format_problem`), the question repeats a training
    question or an earlier sample, or (pattern and error samples) is a near copy of one: the same
    numbers and more than `max_similarity` of the same words (small generators often return the
    example with a word changed, or one variant several times; a maths problem with new numbers is a
    new problem). Only what a sample writes anew is compared, among prompts that keep the same part
    of their example (`SampleForm.new_part`: a SQuAD question, under the same context)."""
    from pada.agents.leakage import normalise_tokens

    new_part = task.sample_form.new_part
    exact: set[tuple[str, str]] = set()
    words_by_group: dict[tuple[str, tuple[str, ...]], list[frozenset[str]]] = {}  # near copies share these

    def split(prompt: str) -> tuple[str, list[str]]:
        kept, written = new_part(prompt)
        return kept, normalise_tokens(written)

    def remember(kept: str, tokens: list[str]) -> None:
        exact.add((kept, " ".join(tokens)))
        words_by_group.setdefault((kept, numbers_of(tokens)), []).append(frozenset(tokens))

    for example in train_examples:
        remember(*split(example.prompt))
    by_reason: dict[str, list[str]] = {}
    for sample in samples:
        kept, tokens = split(sample.question)
        words = frozenset(tokens)
        reason = task.format_problem(sample.question, sample.answer)
        if not reason and (kept, " ".join(tokens)) in exact:
            reason = "the question repeats a training question or another sample"
        elif not reason and sample.branch != "rephrase" and max_similarity < 1.0 and any(
                jaccard(words, other) > max_similarity
                for other in words_by_group.get((kept, numbers_of(tokens)), [])):
            reason = "the question is a near copy of a training question or another sample"
        remember(kept, tokens)
        if reason:
            by_reason.setdefault(reason, []).append(sample.sample_id)
    return by_reason


def numbers_of(tokens: list[str]) -> tuple[str, ...]:
    return tuple(sorted(token for token in tokens if token.isdigit()))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0

"""Synthetic data generation: pattern-guided, error-based, and rephrasing (AugGPT baseline).

Branches (each a `SyntheticSample.branch`):
- "pattern": per strategy, draw training examples and ask the generator for B
  variants per call that follow the strategy, keep the example's format and
  answer style and vary the content (paper section 4, temperature 0.7).
- "error": from the SLM's training-set failures, new questions of the same
  format with correct answers (LLMs-as-Instructors / LLM2LLM).
- "rephrase": AugGPT baseline, B rephrasings of a training question per call;
  the original answer is kept verbatim.

Leakage: every function here takes training examples only, never validation
or test data; `leak_check` (e.g. `LeakageGuard.assert_no_leak`) is run on every
first-attempt generation prompt, and `generate_and_qc` drops accepted samples
that overlap a protected question.

Form: the generator fills the task's `SampleForm` fields (pada/tasks/forms.py: for multiple choice
the question, the option texts and the answer letter; for maths a solution and the final number) and
the code assembles the user turn and the reply in the task's layout, so the options and the final
`#### n` cannot go missing. For SQuAD (`SPAN_FORM`) the generator writes a new question and its
answer for the example's own context, which the code keeps verbatim; an answer that is not a span of
that context makes the item invalid (dropped like a schema failure). `structured=False` asks for a
free question and answer instead.

Template: a small generator often drops the task's instruction lines from the
questions it writes; with `restore_template` (default) the lines every
training prompt starts or ends with are put back, so synthetic user turns look
like what the SLM is evaluated on.

Shape of the work: a branch is first planned as `BatchPlan`s (one generation
call each: which example, which strategy, which sample ids), then the plans
run through the quality-control loop (`pada.agents.quality.run_qc_rounds`),
which regenerates weak batches with the judge's feedback. All calls of a round
go out together through `complete_json_many`.

Cost: ceil(n_k / batch_size) generation calls per strategy, one or more per
used failure, ceil(n / batch_size) for rephrasing, each repeated for every QC
regeneration, plus one judge call per batch per attempt.
Deterministic for a seed: example draws use `random.Random(<string seed>)`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Callable, Iterable

from pydantic import BaseModel, Field, StringConstraints, create_model

from pada.agents.budget import Budget, error_quotas
from pada.agents.leakage import LeakageGuard, LeakDrop, LeakError, normalise_tokens
from pada.agents.quality import QCBatch, QCConfig, run_qc_rounds
from pada.agents.text import truncate
from pada.records import Branch, Example, Failure, Message, QCResult, Strategy, SyntheticSample
from pada.tasks.forms import FREE_FORM, FreeItem, SampleForm

STAGES: dict[str, str] = {"pattern": "generation_pattern", "error": "generation_error",
                          "rephrase": "generation_rephrase"}
PROMPTS: dict[str, str] = {"pattern": "generate_pattern", "error": "generate_error", "rephrase": "rephrase"}
BRANCHES: tuple[Branch, ...] = ("pattern", "error", "rephrase")


@dataclass
class GenerationConfig:
    """Settings for the generation branches."""

    batch_size: int = field(default=3, metadata={"help": "Variants asked for per call (the paper's B). Small (2-4) for local 0.5B models, which drop items in long lists (MEASURED.md)."})
    temperature: float = field(default=0.7, metadata={"help": "Paper: 0.7 for generation (0 everywhere else)."})
    format_hint: str = field(default="", metadata={"help": "Optional task-specific format rule added to every generation prompt, e.g. 'End the reply with #### <number>.'"})
    max_field_chars: int = field(default=2000, metadata={"help": "Example text shown to the generator is cut to this many characters (long SQuAD contexts, code)."})
    max_prediction_chars: int = field(default=600, metadata={"help": "The SLM's wrong reply shown in error-based prompts is cut to this many characters (small models ramble)."})
    structured: bool = field(default=True, metadata={"help": "Ask the generator for the task's fields (question, option texts and answer letter; or solution and final number) and assemble the turns in code, so a small model cannot drop the options or the final number. Off: a free-form question and answer."})
    restore_template: bool = field(default=True, metadata={"help": "Put back the task's instruction lines (first/last lines shared by every training prompt) when a generated question drops them; a 0.5B generator often does, and the SLM is evaluated with them."})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be within [0, 2], got {self.temperature}")


# ---------------------------------------------------------------------------
# What the generator returns


# One new example is an item of the task's form (FreeItem: question + answer). The code fills
# sample_id, is_synthetic, based_on_* and builds `messages` (the paper's record fields) itself.


@lru_cache(maxsize=None)
def variants_schema(count: int, item: type[BaseModel] = FreeItem) -> type[BaseModel]:
    """`{"variants": [item] * count}` (class name `GeneratedVariants` for every count and form)."""
    return create_model("GeneratedVariants", variants=(list[item], Field(min_length=count, max_length=count)))


@lru_cache(maxsize=None)
def rephrasings_schema(count: int) -> type[BaseModel]:
    """`{"rephrasings": [str] * count}` (class name `Rephrasings`)."""
    return create_model("Rephrasings", rephrasings=(list[Annotated[str, Field(min_length=1)]],
                                                    Field(min_length=count, max_length=count)))


# ---------------------------------------------------------------------------
# Planning: which calls to make


@dataclass
class BatchPlan:
    """One generation call: the branch, the training example shown, the strategy (pattern branch)
    or failure (error branch), and the ids of the samples it must produce."""

    branch: Branch
    sample_ids: list[str]
    example: Example
    strategy: Strategy | None = None
    failure: Failure | None = None

    @property
    def size(self) -> int:
        return len(self.sample_ids)

    def qc_batch(self, form: SampleForm | None = None) -> QCBatch:
        return QCBatch(original=self.example, strategy=self.strategy, form=form)


def draw_examples(pool: list, count: int, rng: random.Random) -> list:
    """`count` items from `pool`: a seeded shuffle, cycled when more are needed than there are."""
    if count <= 0 or not pool:
        return []
    order = rng.sample(pool, len(pool))
    return [order[i % len(order)] for i in range(count)]


def chunk_ids(ids: list[str], size: int) -> list[list[str]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def plan_pattern_batches(strategies: list[Strategy], per_cluster: list[int], train_examples: list[Example],
                         config: GenerationConfig, seed: int, iteration: int) -> list[BatchPlan]:
    """ceil(n_k / batch_size) calls for strategy k, each on a different training example where possible.
    Sample ids: f"it{iteration}-pat-{k}-{n}", k = the strategy's position, n = 0..n_k-1."""
    if len(per_cluster) != len(strategies):
        raise ValueError(f"budget has {len(per_cluster)} cluster shares but {len(strategies)} strategies were "
                         "given; plan the budget with n_clusters=len(strategies)")
    plans = []
    for k, (strategy, n_k) in enumerate(zip(strategies, per_cluster)):
        ids = [f"it{iteration}-pat-{k}-{n}" for n in range(n_k)]
        groups = chunk_ids(ids, config.batch_size)
        rng = random.Random(f"pattern:{seed}:{iteration}:{k}")
        for group, example in zip(groups, draw_examples(train_examples, len(groups), rng)):
            plans.append(BatchPlan("pattern", group, example, strategy=strategy))
    return plans


def plan_error_batches(train_failures: list[Failure], error_budget: int, variants_per_failure: int,
                       train_examples: list[Example], config: GenerationConfig, seed: int,
                       iteration: int) -> list[BatchPlan]:
    """Failures drawn in a seeded order, `error_quotas` samples each, at most batch_size per call.
    Sample ids: f"it{iteration}-err-{n}". A failure whose id is not a training example is refused:
    validation failures must never reach the generator."""
    train_by_id = {ex.id: ex for ex in train_examples}
    outsiders = [f.id for f in train_failures if f.id not in train_by_id]
    if outsiders:
        raise LeakError(f"error-based generation got failures that are not training examples "
                        f"(e.g. {outsiders[:3]}); pass only the SLM's training-set failures")
    rng = random.Random(f"error:{seed}:{iteration}")
    failures = rng.sample(train_failures, len(train_failures))
    quotas = error_quotas(error_budget, len(failures), variants_per_failure)
    plans, n = [], 0
    for failure, quota in zip(failures, quotas):
        ids = [f"it{iteration}-err-{n + i}" for i in range(quota)]
        n += quota
        for group in chunk_ids(ids, config.batch_size):
            plans.append(BatchPlan("error", group, train_by_id[failure.id], failure=failure))
    return plans


def plan_rephrase_batches(train_examples: list[Example], count: int, config: GenerationConfig, seed: int,
                          iteration: int) -> list[BatchPlan]:
    """ceil(count / batch_size) calls, each rephrasing a different training example where possible.
    Sample ids: f"it{iteration}-reph-{n}"."""
    ids = [f"it{iteration}-reph-{n}" for n in range(count)]
    groups = chunk_ids(ids, config.batch_size)
    rng = random.Random(f"rephrase:{seed}:{iteration}")
    return [BatchPlan("rephrase", group, example)
            for group, example in zip(groups, draw_examples(train_examples, len(groups), rng))]


# ---------------------------------------------------------------------------
# Prompts and replies


def batch_messages(plan: BatchPlan, feedback: str | None, config: GenerationConfig,
                   form: SampleForm = FREE_FORM) -> list[Message]:
    """The generation prompt for one call (also the UI's prompt preview)."""
    from pada.llm.prompts import render

    example = {"prompt": truncate(plan.example.prompt, config.max_field_chars),
               "answer": truncate(plan.example.answer, config.max_field_chars)}
    common = {"example": example, "n": plan.size, "feedback": feedback, "format_hint": config.format_hint,
              "content_rule": form.content_rule}
    if plan.branch == "pattern":
        return render(PROMPTS["pattern"], strategy=plan.strategy, item_fields=form.fields_help, **common)
    if plan.branch == "error":
        prediction = truncate(plan.failure.prediction, config.max_prediction_chars) or "(empty reply)"
        return render(PROMPTS["error"], prediction=prediction, item_fields=form.fields_help, **common)
    target, _ = form.rephrase_target(plan.example.prompt)
    return render(PROMPTS["rephrase"], text=truncate(target, config.max_field_chars), **common)


def batch_schema(plan: BatchPlan, form: SampleForm = FREE_FORM) -> type[BaseModel]:
    return rephrasings_schema(plan.size) if plan.branch == "rephrase" else variants_schema(plan.size, form.item)


def prompt_text(messages: list[Message]) -> str:
    return "\n".join(m["content"] for m in messages)


# A salvaged rephrasing must have some text in it.
_NON_BLANK = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def reply_items(plan: BatchPlan, result, form: SampleForm = FREE_FORM) -> list:
    """The generated items of one reply (validated, or salvaged from a failed reply), at most plan.size."""
    from pada.llm.jsonparse import salvage_items

    if result.ok and result.value is not None:
        items = result.value.rephrasings if plan.branch == "rephrase" else result.value.variants
    elif plan.branch == "rephrase":
        items = salvage_items(result.raw, "rephrasings", _NON_BLANK)
    else:
        items = salvage_items(result.raw, "variants", form.item)
    items = list(items)[:plan.size]
    if plan.branch != "rephrase":
        # what a schema cannot say (a SQuAD answer must be a span of the example's context): such an
        # item is dropped like one that failed validation, never repaired
        items = [item for item in items if form.problem(item, plan.example.prompt) is None]
    return items


@dataclass(frozen=True)
class PromptTemplate:
    """Leading and trailing lines every training prompt shares (the task's instructions)."""

    prefix: str = ""
    suffix: str = ""

    def apply(self, question: str) -> str:
        """`question` with the shared lines added where it lacks them (compared on normalised words)."""
        words = " ".join(normalise_tokens(question))
        if self.prefix and " ".join(normalise_tokens(self.prefix)) not in words:
            question = f"{self.prefix}\n{question}"
        if self.suffix and " ".join(normalise_tokens(self.suffix)) not in words:
            question = f"{question}\n{self.suffix}"
        return question


def shared_template(prompts: list[str], min_prompts: int = 3) -> PromptTemplate:
    """The first and last lines common to all `prompts`. Needs `min_prompts` distinct prompts: with
    fewer, a shared line may be chance rather than the task's instructions."""
    line_lists = [p.strip().splitlines() for p in prompts]
    if len(set(prompts)) < min_prompts:
        return PromptTemplate()
    shortest = min(len(lines) for lines in line_lists)
    head = 0
    while head < shortest and len({lines[head] for lines in line_lists}) == 1:
        head += 1
    tail = 0
    while tail < shortest - head and len({lines[-1 - tail] for lines in line_lists}) == 1:
        tail += 1
    first = line_lists[0]
    return PromptTemplate(prefix="\n".join(first[:head]).strip(),
                          suffix="\n".join(first[len(first) - tail:]).strip() if tail else "")


def task_template(train_examples: list[Example], config: GenerationConfig) -> PromptTemplate:
    """The instruction lines shared by all training prompts, or nothing when `restore_template` is off."""
    if not config.restore_template:
        return PromptTemplate()
    return shared_template(list({ex.id: ex.prompt for ex in train_examples}.values()))


def samples_from_items(plan: BatchPlan, items: list, attempt: int, template: PromptTemplate = PromptTemplate(),
                       form: SampleForm = FREE_FORM) -> list[SyntheticSample]:
    """SyntheticSample records for one call's items, turned into turns by the form; rephrasings keep
    the original answer (and, for multiple choice, the original options) verbatim."""
    _, put_back = form.rephrase_target(plan.example.prompt)
    samples = []
    for sample_id, item in zip(plan.sample_ids, items):
        if plan.branch == "rephrase":
            question, answer = put_back(item.strip()), plan.example.answer
        else:
            question, answer = form.build(item, plan.example.prompt)
        question = template.apply(question)
        samples.append(SyntheticSample(
            sample_id=sample_id, branch=plan.branch,
            based_on_strategy=plan.strategy.strategy_name if plan.strategy else None,
            based_on_example=plan.example.id,
            messages=[{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            attempt=attempt))
    return samples


@dataclass
class CallStats:
    """Generation calls per branch, and how many gave nothing usable."""

    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BRANCHES, 0))
    failed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BRANCHES, 0))


def effective_form(config: GenerationConfig, form: SampleForm) -> SampleForm:
    """The task's form, or the free form when `structured` is off."""
    return form if config.structured else FREE_FORM


class BatchGenerator:
    """Runs generation calls for plans: `self(requests, attempt)` is the `RoundGenerator` the QC loop
    wants (requests = [(plan_index, feedback | None)]). All requests of a round go out together.
    `form` is the task's sample form; with `config.structured` off, the free form is used."""

    def __init__(self, plans: list[BatchPlan], generator, config: GenerationConfig, seed: int,
                 leak_check: Callable[[str], None] | None = None, template: PromptTemplate | None = None,
                 form: SampleForm = FREE_FORM):
        self.plans, self.generator, self.config, self.seed = plans, generator, config, seed
        self.leak_check = leak_check
        self.form = effective_form(config, form)
        self.stats = CallStats()
        if template is None:
            template = task_template([plan.example for plan in plans], config)
        self.template = template

    def request(self, plan: BatchPlan, feedback: str | None, attempt: int):
        from pada.llm import JSONRequest

        messages = batch_messages(plan, feedback, self.config, self.form)
        if self.leak_check is not None and feedback is None:
            # the regeneration prompt only adds the judge's feedback to this one
            self.leak_check(prompt_text(messages))
        # a distinct salt per slot and attempt: sampled draws stay distinct, a resumed run hits the cache
        salt = f"{plan.sample_ids[0]}:{plan.example.id}:seed{self.seed}:attempt{attempt}"
        return JSONRequest(messages=messages, schema=batch_schema(plan, self.form), stage=STAGES[plan.branch],
                           temperature=self.config.temperature, cache_salt=salt)

    def __call__(self, requests: list[tuple[int, str | None]], attempt: int) -> list[list[SyntheticSample]]:
        if not requests:
            return []
        plans = [self.plans[i] for i, _ in requests]
        calls = [self.request(plan, feedback, attempt) for plan, (_, feedback) in zip(plans, requests)]
        results = self.generator.complete_json_many(calls)
        out = []
        for plan, result in zip(plans, results):
            items = reply_items(plan, result, self.form)
            self.stats.calls[plan.branch] += 1
            self.stats.failed[plan.branch] += 0 if items else 1
            out.append(samples_from_items(plan, items, attempt, self.template, self.form))
        return out


def generate_batches(plans: list[BatchPlan], generator, config: GenerationConfig | None = None, seed: int = 0,
                     leak_check: Callable[[str], None] | None = None,
                     template: PromptTemplate | None = None, form: SampleForm = FREE_FORM
                     ) -> list[SyntheticSample]:
    """One attempt for every plan, without quality control (one call per plan, all concurrent)."""
    config = config or GenerationConfig()
    run = BatchGenerator(plans, generator, config, seed, leak_check, template, form)
    batches = run([(i, None) for i in range(len(plans))], attempt=1)
    return [sample for batch in batches for sample in batch]


# ---------------------------------------------------------------------------
# Branch-level functions (one attempt, no quality control)


def generate_pattern_samples(strategies: list[Strategy], per_cluster: list[int], train_examples: list[Example],
                             generator, config: GenerationConfig | None = None, seed: int = 0,
                             iteration: int = 1, leak_check: Callable[[str], None] | None = None,
                             form: SampleForm = FREE_FORM) -> list[SyntheticSample]:
    """Pattern-guided samples: `per_cluster[k]` for `strategies[k]`, variants of training examples."""
    config = config or GenerationConfig()
    plans = plan_pattern_batches(strategies, per_cluster, train_examples, config, seed, iteration)
    return generate_batches(plans, generator, config, seed, leak_check,
                            task_template(train_examples, config), form)


def generate_error_samples(train_failures: list[Failure], error_budget: int, train_examples: list[Example],
                           generator, config: GenerationConfig | None = None, seed: int = 0, iteration: int = 1,
                           variants_per_failure: int = 2, leak_check: Callable[[str], None] | None = None,
                           form: SampleForm = FREE_FORM) -> list[SyntheticSample]:
    """Error-based samples: new questions like the ones the SLM got wrong in training."""
    config = config or GenerationConfig()
    plans = plan_error_batches(train_failures, error_budget, variants_per_failure, train_examples, config,
                               seed, iteration)
    return generate_batches(plans, generator, config, seed, leak_check,
                            task_template(train_examples, config), form)


def generate_rephrase_samples(train_examples: list[Example], count: int, generator,
                              config: GenerationConfig | None = None, seed: int = 0, iteration: int = 1,
                              leak_check: Callable[[str], None] | None = None,
                              form: SampleForm = FREE_FORM) -> list[SyntheticSample]:
    """AugGPT baseline: rephrased training questions with their original answers."""
    config = config or GenerationConfig()
    plans = plan_rephrase_batches(train_examples, count, config, seed, iteration)
    return generate_batches(plans, generator, config, seed, leak_check,
                            task_template(train_examples, config), form)


# ---------------------------------------------------------------------------
# Everything for one iteration


@dataclass
class GenerationOutcome:
    """What one iteration's generation produced.

    accepted: passed QC (and the leakage filter), ready for training.
    rejected: the final attempt's samples below the QC threshold (kept with their scores).
    attempts: every sample of every attempt; qc_results: one per sample per attempt.
    leaked: accepted by QC but dropped for overlapping a validation/test question.
    produced_counts: per branch and in total (see `count_outcome`).
    canaries: the judge's verdicts on the planted samples (pada/agents/canaries.py); they are in none
    of the lists above and in no count.
    """

    accepted: list[SyntheticSample] = field(default_factory=list)
    rejected: list[SyntheticSample] = field(default_factory=list)
    attempts: list[SyntheticSample] = field(default_factory=list)
    qc_results: list[QCResult] = field(default_factory=list)
    produced_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    leaked: list[LeakDrop] = field(default_factory=list)
    canaries: list = field(default_factory=list)


def plan_iteration(strategies: list[Strategy], budget: Budget, train_examples: list[Example],
                   train_failures: list[Failure], config: GenerationConfig, seed: int,
                   iteration: int) -> list[BatchPlan]:
    """Every generation call of one iteration, in a fixed order: pattern, error, rephrase."""
    return (plan_pattern_batches(strategies, budget.per_cluster, train_examples, config, seed, iteration)
            + plan_error_batches(train_failures, budget.error, budget.variants_per_failure, train_examples,
                                 config, seed, iteration)
            + plan_rephrase_batches(train_examples, budget.rephrase, config, seed, iteration))


def generate_and_qc(strategies: list[Strategy], budget: Budget, train_examples: list[Example],
                    train_failures: list[Failure], generator, judge, gen_config: GenerationConfig | None = None,
                    qc_config: QCConfig | None = None, seed: int = 0, iteration: int = 1,
                    leak_guard: LeakageGuard | None = None, form: SampleForm = FREE_FORM) -> GenerationOutcome:
    """Generate the iteration's synthetic samples under quality control.

    `budget.per_cluster[k]` belongs to `strategies[k]`. `generator` and `judge` are
    `pada.llm.LLMClient`s (the paper uses different models). With `leak_guard`, every generation
    prompt is checked (LeakError if a protected id/question is in it) and accepted samples that
    overlap a protected question are moved to `leaked`. `form` is the task's `SampleForm`. With
    `qc_config.canaries`, planted samples built from `train_examples` check the judge (`outcome.canaries`).
    """
    gen_config = gen_config or GenerationConfig()
    qc_config = qc_config or QCConfig()
    plans = plan_iteration(strategies, budget, train_examples, train_failures, gen_config, seed, iteration)
    runner = BatchGenerator(plans, generator, gen_config, seed,
                            leak_guard.assert_no_leak if leak_guard is not None else None,
                            task_template(train_examples, gen_config), form)
    judged_form = effective_form(gen_config, form)
    planter = None
    if qc_config.canaries and not qc_config.qc_disabled:
        from pada.agents.canaries import CanaryPlanter

        planter = CanaryPlanter(train_examples, judged_form, qc_config.canaries, seed, iteration)
    qc = run_qc_rounds(runner, [plan.qc_batch(judged_form) for plan in plans], judge, qc_config, planter)
    accepted, leaked = leak_guard.filter(qc.accepted) if leak_guard is not None else (qc.accepted, [])
    outcome = GenerationOutcome(accepted=accepted, rejected=qc.rejected, attempts=qc.attempts,
                                qc_results=qc.qc_results, leaked=leaked, canaries=qc.canaries)
    outcome.produced_counts = count_outcome(plans, outcome, runner.stats)
    return outcome


def count_outcome(plans: list[BatchPlan], outcome: GenerationOutcome, stats: CallStats) -> dict[str, dict[str, int]]:
    """Per branch: planned samples, batches, calls made, calls with nothing usable, samples generated
    (all attempts), accepted, rejected by QC, dropped for leakage; plus "total"."""
    def by_branch(samples: Iterable[SyntheticSample]) -> dict[str, int]:
        counts = dict.fromkeys(BRANCHES, 0)
        for sample in samples:
            counts[sample.branch] += 1
        return counts

    planned = dict.fromkeys(BRANCHES, 0)
    batches = dict.fromkeys(BRANCHES, 0)
    for plan in plans:
        planned[plan.branch] += plan.size
        batches[plan.branch] += 1
    columns = {"planned": planned, "batches": batches, "calls": stats.calls, "failed_calls": stats.failed,
               "generated": by_branch(outcome.attempts), "accepted": by_branch(outcome.accepted),
               "rejected": by_branch(outcome.rejected), "leaked": by_branch(d.sample for d in outcome.leaked)}
    counts = {branch: {name: column[branch] for name, column in columns.items()} for branch in BRANCHES}
    counts["total"] = {name: sum(column.values()) for name, column in columns.items()}
    return counts

"""PaDA-Agent's iterative loop over the run store.

One iteration (1-based):

    training set -> fine-tune -> evaluate (train, validation, test)
    -> analyse -> cluster -> patterns -> strategies -> [pause] -> generate + QC -> [pause]

and the accepted samples join the next iteration's training set. The last
iteration stops after evaluation (plus, for PaDA, the analysis stages, so the
dashboard can show which error patterns remain).

Every stage is a plain function from `pada.agents` / `pada.slm` whose output
is written to the store together with the stage's "done" marker in one
transaction. `run()` skips stages already done, so a run killed at any moment
continues from the last completed stage; LLM calls are cached on disk, so a
stage that was cut short is redone without paying again. Validation and test
examples are evaluated but never shown to a generator and never trained on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from dataclasses import replace
from typing import Any

from pada.config import RunConfig, from_dict
from pada.records import Failure, LLMCall
from pada.store import RunStore
from pada.store.views import TrainingRow

log = logging.getLogger(__name__)

# Stage names, in the order one iteration runs them.
TRAIN_SET, FINETUNE, EVALUATE = "train_set", "finetune", "evaluate"
ANALYSE, CLUSTER, PATTERNS, STRATEGIES = "analyse", "cluster", "patterns", "strategies"
REVIEW_STRATEGIES, GENERATE, REVIEW_QC = "review_strategies", "generate", "review_qc"
SPLITS = ("train", "validation", "test")


class Paused(Exception):
    """Raised inside the loop when a pause point is reached; the run waits for a person."""


def signature(*parts: Any) -> str:
    """A short hash of a stage's settings, stored with its done marker."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Pipeline:
    """Runs (or resumes) one stored run. Build it with `Pipeline(store)`; call `run()`."""

    def __init__(self, store: RunStore, config: RunConfig | None = None):
        self.store = store
        self.config = config or from_dict(store.config(), source=f"run {store.run_id} config")
        self.iteration = 0
        self._task = None
        self._splits = None
        self._llms: dict[str, Any] = {}
        self._llm_stage: LLMStageProgress | None = None

    # ------------------------------------------------------------------ set-up

    @property
    def task(self):
        if self._task is None:
            from pada.tasks import get_task

            self._task = get_task(self.config.task, data_dir=self.config.data_dir, **self.config.task_options)
        return self._task

    @property
    def splits(self):
        if self._splits is None:
            data = self.config.data
            self._splits = self.task.splits(train_size=data.train_size, val_size=data.val_size,
                                            test_size=data.test_size, seed=self.config.seed)
        return self._splits

    def llm(self, role: str):
        """The generator ("llm") or the judge ("judge") client, caching and accounting into the store."""
        if role not in self._llms:
            from pada.llm import LLMClient

            settings = getattr(self.config, role)
            settings = replace(settings, cache_dir=self.store.llm_cache_dir())
            self._llms[role] = LLMClient(settings, on_call=self._record_call)
        return self._llms[role]

    def _record_call(self, call: LLMCall) -> None:
        self.store.record_llm_call(self.iteration, call)
        if self._llm_stage is not None:
            self._llm_stage.count(call)

    @property
    def n_iterations(self) -> int:
        # Vanilla fine-tuning never changes its training set: one round says all there is to say.
        return 1 if self.config.method == "vanilla" else max(1, self.config.iterations)

    @property
    def uses_patterns(self) -> bool:
        return self.config.method == "pada" and not self.config.ablations.no_patterns

    @property
    def augments(self) -> bool:
        return self.config.method != "vanilla"

    # -------------------------------------------------------------------- loop

    def run(self) -> str:
        """Run every remaining stage. Returns the final status."""
        store = self.store
        store.set_pid(os.getpid())
        store.set_status("running")
        try:
            for iteration in range(1, self.n_iterations + 1):
                self.iteration = iteration
                self.run_iteration(iteration)
        except Paused as pause:
            store.set_status("awaiting_review")
            store.log_event("info", str(pause), iteration=self.iteration)
            return "awaiting_review"
        except BaseException as err:
            status = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
            store.set_status(status, error=f"{type(err).__name__}: {err}")
            store.log_event("error", f"{status}: {type(err).__name__}: {err}", iteration=self.iteration)
            raise
        finally:
            store.set_pid(None)
        store.set_current(self.n_iterations, None)
        store.set_status("completed")
        store.log_event("info", "run completed")
        return "completed"

    def run_iteration(self, i: int) -> None:
        last = i == self.n_iterations
        self.stage(i, TRAIN_SET, self.build_training_set)
        self.stage(i, FINETUNE, self.finetune)
        self.stage(i, EVALUATE, self.evaluate)
        if self.uses_patterns and (not last or self.config.analyse_last_iteration):
            self.stage(i, ANALYSE, self.analyse)
            self.stage(i, CLUSTER, self.cluster)
            self.stage(i, PATTERNS, self.categorise)
            if not last:
                self.stage(i, STRATEGIES, self.draft_strategies)
                self.pause_point(i, "strategies", REVIEW_STRATEGIES)
        if not last and self.augments:
            self.stage(i, GENERATE, self.generate)
            self.pause_point(i, "qc", REVIEW_QC)

    def stage(self, i: int, name: str, fn) -> None:
        """Run `fn(i)` unless the stage is done; it returns a writer that saves its records."""
        if self.store.stage_done(i, name):
            return
        self.store.set_current(i, name)
        self.store.log_event("info", f"{name} started", iteration=i, stage=name)
        self._llm_stage = LLMStageProgress(self.store, i, name)
        try:
            write = fn(i)
        finally:
            self._llm_stage.close()
            self._llm_stage = None
        self.store.complete_stage(i, name, signature(name, self.config.to_dict()), write)
        self.store.log_event("info", f"{name} done", iteration=i, stage=name)

    def pause_point(self, i: int, point: str, review_stage: str) -> None:
        if point not in self.config.pause_after or self.store.stage_done(i, review_stage):
            return
        self.store.set_current(i, review_stage)
        raise Paused(f"paused after {point} in iteration {i}: review in the dashboard, then resume the run")

    def approve_pending_review(self) -> None:
        """A person resumed the run: the review it was waiting for is done."""
        state = self.store.state()
        if state.status == "awaiting_review" and state.stage in (REVIEW_STRATEGIES, REVIEW_QC):
            self.store.mark_stage_done(state.iteration, state.stage, "approved")
            self.store.log_event("info", f"{state.stage} approved; resuming", iteration=state.iteration)

    # ------------------------------------------------------------------ stages

    def build_training_set(self, i: int):
        """Iteration 1 trains on the training subset; later ones add the previous iteration's accepted samples."""
        if i == 1:
            rows = [TrainingRow(id=ex.id, messages=ex.messages()) for ex in self.splits.train]
        else:
            rows = list(self.store.training_set(i - 1))
            rows += [TrainingRow(id=s.sample_id, messages=s.messages) for s in self.store.accepted_samples(i - 1)]
        self._check_no_protected_ids(row.id for row in rows)
        return lambda store: store.save_training_set(i, rows)

    def finetune(self, i: int):
        from pada.slm.train import finetune

        conversations = [row.messages for row in self.store.training_set(i)]
        out_dir = self.store.adapter_dir(i)

        def progress(step: int, steps: int) -> None:
            self.store.set_progress(i, FINETUNE, step, steps)
        train_config = replace(self.config.slm.train, seed=self.config.seed)
        result = finetune(self.config.slm.model, conversations, train_config, out_dir, on_progress=progress)
        summary = {"train_seconds": round(result.train_seconds, 1), "final_loss": result.final_loss,
                   "examples": len(conversations)}
        return lambda store: store.log_event("info", f"fine-tuned: {json.dumps(summary)}", iteration=i,
                                             stage=FINETUNE)

    def evaluate(self, i: int):
        from pada.slm.evaluate import evaluate
        from pada.slm.generate import load_for_inference

        model, tokenizer = load_for_inference(self.config.slm.model, self.store.adapter_dir(i))
        train = self.splits.train
        if self.config.data.eval_train_limit is not None:
            train = train[: self.config.data.eval_train_limit]
        examples = {"train": train, "validation": self.splits.validation, "test": self.splits.test}
        results = {}
        for n, split in enumerate(SPLITS):
            self.store.set_progress(i, EVALUATE, n, len(SPLITS))
            results[split] = evaluate(self.task, examples[split], model, tokenizer, split,
                                      batch_size=self.config.slm.eval_batch_size)
        self.store.set_progress(i, EVALUATE, len(SPLITS), len(SPLITS))

        def write(store: RunStore) -> None:
            for split, result in results.items():
                store.save_predictions(i, split, result.predictions)
                store.save_failures(i, split, result.failures)
                store.save_metrics(i, split, self._metrics(result))
        return write

    def _metrics(self, result) -> dict[str, float]:
        """The headline metric, the example count, and the evaluator's means of the other scores (e.g. f1)."""
        return {**result.metrics, self.task.metric: result.metric, "n": float(len(result.predictions))}

    def analyse(self, i: int):
        from pada.agents.error_analysis import analyse_failures

        failures = self.store.failures(i, "validation")
        analysis_config = replace(self.config.analysis, seed=self.config.seed + i)
        analyses = analyse_failures(failures, self.llm("llm"), analysis_config, self.task_description)
        return lambda store: store.save_analyses(i, analyses)

    def cluster(self, i: int):
        from pada.agents.clustering import cluster_analyses

        result = cluster_analyses(self.store.analyses(i), replace(self.config.clustering, seed=self.config.seed))
        return lambda store: store.save_clustering(i, result)

    def categorise(self, i: int):
        from pada.agents.patterns import categorise_patterns

        patterns = categorise_patterns(self.store.clustering(i), self.store.analyses(i),
                                       self.store.failures(i, "validation"), self.llm("llm"),
                                       self.config.patterns, self.task_description)
        return lambda store: store.save_patterns(i, patterns)

    def draft_strategies(self, i: int):
        from pada.agents.strategies import draft_strategies

        strategies = draft_strategies(self.store.patterns(i), self.llm("llm"), self.config.strategies,
                                      self.task_description)
        return lambda store: store.save_strategies(i, strategies, author="agent")

    def generate(self, i: int):
        from pada.agents.budget import plan_budget
        from pada.agents.generation import effective_form, generate_and_qc
        from pada.agents.quality import unfit_samples
        from pada.tasks.forms import FREE_FORM

        strategies = [self._redacted(s) for s in self.store.current_strategies(i)] if self.uses_patterns else []
        train_failures = self._train_failures(i)
        budget = plan_budget(len(self.splits.train), len(strategies), len(train_failures), self._budget_config())
        qc_config = replace(self.config.qc, qc_disabled=self.config.qc.qc_disabled or self.config.ablations.no_qc)
        gen_config = self.config.generation
        if not gen_config.format_hint and effective_form(gen_config, self.task.sample_form) is FREE_FORM:
            # the task's own rule unless the config sets one; a structured form's field list says it instead
            gen_config = replace(gen_config, format_hint=self.task.format_hint)
        outcome = generate_and_qc(strategies, budget, self.splits.train, train_failures, self.llm("llm"),
                                  self.llm("judge"), gen_config, qc_config,
                                  seed=self.config.seed, iteration=i, leak_guard=self.leak_guard,
                                  form=self.task.sample_form)
        unfit = unfit_samples(self.task, self.splits.train, outcome.accepted, self.config.qc.max_similarity)
        counts = dict(outcome.produced_counts, budget={"total": budget.total, "error": budget.error,
                                                       "rephrase": budget.rephrase,
                                                       "per_cluster": budget.per_cluster},
                      leaked=len(outcome.leaked), unfit=sum(map(len, unfit.values())))

        def write(store: RunStore) -> None:
            store.save_samples(i, outcome.attempts, outcome.qc_results)
            store.log_event("info", f"generation counts: {json.dumps(counts)}", iteration=i, stage=GENERATE)
            if outcome.leaked:
                store.log_event("warning", f"dropped {len(outcome.leaked)} samples overlapping validation/test "
                                           f"questions", iteration=i, stage=GENERATE)
                leaked_ids = [drop.sample.sample_id for drop in outcome.leaked]
                store.set_sample_status(leaked_ids, "rejected_qc", author="leakage-guard", iteration=i)
            for reason, ids in unfit.items():
                store.set_sample_status(ids, "rejected_qc", author="sample-check", iteration=i)
                store.log_event("warning", f"dropped {len(ids)} accepted samples: {reason}", iteration=i,
                                stage=GENERATE)
        return write

    def _redacted(self, strategy):
        """The strategy with any quoted validation/test id or question masked (never shown to the generator)."""
        guard = self.leak_guard
        return strategy.model_copy(update={
            "strategy_name": guard.redact(strategy.strategy_name),
            "generation_approach": guard.redact(strategy.generation_approach),
            "key_elements": [guard.redact(element) for element in strategy.key_elements],
        })

    def _train_failures(self, i: int) -> list[Failure]:
        errors_on = self.config.method in ("pada", "llms_as_instructors") and not self.config.ablations.no_train_errors
        return self.store.failures(i, "train") if errors_on else []

    def _budget_config(self):
        method, ablations = self.config.method, self.config.ablations
        return replace(
            self.config.budget,
            use_rephrase=method == "auggpt",
            use_patterns=self.uses_patterns,
            use_errors=method in ("pada", "llms_as_instructors") and not ablations.no_train_errors,
        )

    # ----------------------------------------------------------- leakage guard

    @property
    def task_description(self) -> str:
        return self.task.title or self.task.name

    @functools.cached_property
    def leak_guard(self):
        """An index over validation and test questions; generation prompts and samples are checked against it."""
        from pada.agents.leakage import LeakageGuard

        protected = {ex.id: ex.prompt for ex in self.splits.validation + self.splits.test}
        return LeakageGuard(protected, allowed_texts=[ex.prompt for ex in self.splits.train],
                            config=self.config.leakage)

    def _check_no_protected_ids(self, ids) -> None:
        protected = {ex.id for ex in self.splits.validation + self.splits.test}
        leaked = sorted(set(ids) & protected)
        if leaked:
            raise RuntimeError(f"validation/test examples in the training set: {leaked[:5]}")


class LLMStageProgress:
    """Progress of a stage made of LLM calls (analysis, patterns, strategies, generation and QC): the
    number of calls so far, in a terminal tqdm bar and in the store (total unknown: QC regenerates)."""

    def __init__(self, store: RunStore, iteration: int, stage: str):
        self.store, self.iteration, self.stage = store, iteration, stage
        self.calls = 0
        self.bar = None
        self.lock = threading.Lock()  # the generator's and the judge's clients call back from their threads

    def count(self, call: LLMCall) -> None:
        with self.lock:
            if self.bar is None:
                from tqdm.auto import tqdm

                self.bar = tqdm(desc=f"{self.stage} (iteration {self.iteration})", unit=" LLM calls")
            self.calls += 1
            self.bar.update(1)
            self.store.set_progress(self.iteration, self.stage, self.calls, None)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def start_run(config: RunConfig, runs_root=None, run_id: str | None = None) -> RunStore:
    """Create a run directory for `config` (the loop is started separately with `Pipeline(store).run()`)."""
    return RunStore.create(config.to_dict(), runs_root=runs_root, run_id=run_id)

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
from pada.errors import PadaError
from pada.records import Failure, LLMCall, user_turn
from pada.slm.device import release_host_memory
from pada.stages import (  # noqa: F401  (re-exported: the stage names, in the order one iteration runs them)
    ANALYSE, CLUSTER, EVALUATE, FINETUNE, GENERATE, PATTERNS, REVIEW_QC, REVIEW_STRATEGIES, STRATEGIES, TRAIN_SET,
)
from pada.store import RunStore
from pada.store.stored import TrainingRow

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


class Paused(Exception):
    """Raised inside the loop when a pause point is reached; the run waits for a person."""


class LLMUnavailable(PadaError):
    """An LLM the run needs does not answer: every call of a stage failed, or the check before the first
    fine-tune did. The message names the role or stage, the model and the provider's error (keys redacted)."""


def signature(*parts: Any) -> str:
    """A short hash of a stage's settings, stored with its done marker."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _StoreBatchLedger:
    """The run store as the LLM clients' batch ledger (`pada.llm.batch.BatchLedger`): batches are kept per
    iteration, so a restarted run polls the batch its stage created instead of paying for another."""

    def __init__(self, pipeline: Pipeline):
        self._pipeline = pipeline

    def find(self, stage: str, content_hash: str):
        from pada.llm.batch import BatchRecord

        row = self._pipeline.store.llm_batch(self._pipeline.iteration, stage, content_hash)
        if row is None:
            return None
        return BatchRecord(stage=row["stage"], content_hash=row["content_hash"], provider=row["provider"],
                           batch_id=row["batch_id"], input_file_id=row["input_file_id"], status=row["status"],
                           n_requests=row["n_requests"])

    def record(self, record) -> None:
        self._pipeline.store.record_llm_batch(
            self._pipeline.iteration, record.stage, record.content_hash, provider=record.provider,
            batch_id=record.batch_id, input_file_id=record.input_file_id, n_requests=record.n_requests,
            status=record.status)

    def set_status(self, stage: str, content_hash: str, status: str) -> None:
        self._pipeline.store.set_llm_batch_status(self._pipeline.iteration, stage, content_hash, status)


class Pipeline:
    """Runs (or resumes) one stored run. Build it with `Pipeline(store)`; call `run()`."""

    def __init__(self, store: RunStore, config: RunConfig | None = None):
        self.store = store
        self.config = config or from_dict(store.config(), source=f"run {store.run_id} config")
        self.iteration = 0
        self._task = None
        self._splits = None
        self._llms: dict[str, Any] = {}
        self._servers: list[Any] = []  # llama-servers for local/ models, given up when run() ends
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
            self._local_server(settings)
            self._llms[role] = LLMClient(settings, on_call=self._record_call, batch_ledger=_StoreBatchLedger(self))
        return self._llms[role]

    def _local_server(self, settings) -> None:
        """Start (or reuse) a local/ model's llama-server now, its log in the run directory; the client
        finds the same server, and run() gives it up at the end."""
        from pada.llm import engine

        if engine.is_local(settings.model):
            server = engine.server_for(settings, log_dir=self.store.path)
            if server not in self._servers:
                self._servers.append(server)

    def _release_llms(self) -> None:
        """Give up the local LLM servers (and the clients on them). Done while the SLM trains or evaluates:
        an idle server still holds its model (1-2 GB each), which the fine-tune needs more; the next LLM
        stage starts it again in seconds, from the page cache."""
        for server in self._servers:
            server.stop()
        self._servers.clear()
        self._llms.clear()

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
        """Run every remaining stage. Returns the final status. One runner per run: holds the run's lock
        (`RunStore.runner_lock`), so a second `run()` on the same run raises `RunLocked` at once."""
        with self.store.runner_lock():
            return self._run_locked()

    def _run_locked(self) -> str:
        store = self.store
        store.set_pid(os.getpid())
        store.set_status("running")
        try:
            if self.augments and not store.stage_done(1, FINETUNE):
                self.iteration = 1  # the check's calls are accounted to the first iteration
                self.check_llms_answer()
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
            self._release_llms()  # also on failure and stop: no server outlives its run
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
        if name in (FINETUNE, EVALUATE):
            self._release_llms()
        self._llm_stage = progress = LLMStageProgress(self.store, i, name)
        try:
            write = fn(i)
        finally:
            progress.close()
            self._llm_stage = None
        progress.raise_if_a_model_never_answered()
        self.store.complete_stage(i, name, signature(name, self.config.to_dict()), write)
        self.store.log_event("info", f"{name} done", iteration=i, stage=name)

    def pause_point(self, i: int, point: str, review_stage: str) -> None:
        if point not in self.config.pause_after or self.store.stage_done(i, review_stage):
            return
        self.store.set_current(i, review_stage)
        raise Paused(f"paused after {point} in iteration {i}: review in the dashboard, then resume the run")

    def check_llms_answer(self) -> None:
        """One cheap, uncached call to each LLM the method uses, so a wrong key or a dead server fails the
        run in seconds instead of after the first fine-tune (and never as a 'completed' run with no samples)."""
        from pada.llm import LLMClient

        roles = ["llm"] + ([] if self.config.qc.qc_disabled or self.config.ablations.no_qc else ["judge"])
        for role in roles:
            settings = replace(getattr(self.config, role), cache_dir=None, max_tokens=16)
            self._local_server(settings)
            reply = LLMClient(settings, on_call=self._record_call).complete_text(
                [{"role": "user", "content": "Reply with the single word OK."}], stage="preflight")
            if reply.raw is None:  # no reply at all (an empty one still proves the model answers)
                raise LLMUnavailable(f"the {role} model {settings.model} does not answer: {reply.error}")
        self.store.log_event("info", f"LLMs answer: {', '.join(roles)}", iteration=1)

    def approve_pending_review(self) -> None:
        """A person resumed the run: the review it was waiting for is done."""
        state = self.store.state()
        if state.status == "awaiting_review" and state.stage in (REVIEW_STRATEGIES, REVIEW_QC):
            self.store.mark_stage_done(state.iteration, state.stage, "approved")
            self.store.log_event("info", f"{state.stage} approved; resuming", iteration=state.iteration)

    # ------------------------------------------------------------------ stages

    def build_training_set(self, i: int):
        """Iteration 1 trains on the training subset; later ones add the previous iteration's accepted samples.

        Every synthetic row is checked again by content with the leakage guard (whatever its status
        says, e.g. after a review decision): a leak is dropped and marked, never trained on."""
        if i == 1:
            rows = [TrainingRow(id=ex.id, messages=ex.messages()) for ex in self.splits.train]
        else:
            rows = list(self.store.training_set(i - 1))
            rows += [TrainingRow(id=s.sample_id, messages=s.messages) for s in self.store.accepted_samples(i - 1)]
        self._check_no_protected_ids(row.id for row in rows)
        rows, leaked = self._without_leaks(rows)

        def write(store: RunStore) -> None:
            if leaked:
                store.mark_leaked(leaked, iteration=i - 1)
                store.log_event("warning", f"training set: dropped {len(leaked)} synthetic rows overlapping "
                                           f"validation/test questions: {leaked[:5]}", iteration=i, stage=TRAIN_SET)
            store.save_training_set(i, rows)
        return write

    def _without_leaks(self, rows: list[TrainingRow]) -> tuple[list[TrainingRow], list[str]]:
        """(rows to keep, ids of synthetic rows whose user turn the leakage guard flags)."""
        training_ids = {ex.id for ex in self.splits.train}
        kept, leaked = [], []
        for row in rows:
            if row.id not in training_ids and self.leak_guard.check(user_turn(row.messages)) is not None:
                leaked.append(row.id)
            else:
                kept.append(row)
        return kept, leaked

    def finetune(self, i: int):
        from pada.slm.train import finetune

        conversations = [row.messages for row in self.store.training_set(i)]
        out_dir = self.store.adapter_dir(i)

        def progress(step: int, steps: int) -> None:
            self.store.set_progress(i, FINETUNE, step, steps)
        train_config = replace(self.config.slm.train, seed=self.config.seed)
        result = finetune(self.config.slm.model, conversations, train_config, out_dir, on_progress=progress)
        release_host_memory()  # the trainer's heap, before the next stage loads its own model
        summary = {"train_seconds": round(result.train_seconds, 1), "final_loss": result.final_loss,
                   "examples": len(conversations)}
        return lambda store: store.log_event("info", f"fine-tuned: {json.dumps(summary)}", iteration=i,
                                             stage=FINETUNE)

    def evaluate(self, i: int):
        from pada.slm.backends import open_backend
        from pada.slm.evaluate import evaluate

        train = self.splits.train
        if self.config.data.eval_train_limit is not None:
            train = train[: self.config.data.eval_train_limit]
        examples = {"train": train, "validation": self.splits.validation, "test": self.splits.test}
        results = {}
        with open_backend(self.config.slm, self.store.adapter_dir(i)) as backend:
            for n, split in enumerate(SPLITS):
                self.store.set_progress(i, EVALUATE, n, len(SPLITS))
                results[split] = evaluate(self.task, examples[split], backend, split)
        release_host_memory()  # the model is gone: the LLM stages that follow run beside the llama-servers
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

        clustering = self.store.clustering(i)
        patterns = categorise_patterns(clustering, self.store.analyses(i),
                                       self.store.failures(i, "validation"), self.llm("llm"),
                                       self.config.patterns, self.design_description)
        taxa = self.taxa(i, patterns, clustering.embedder)

        def write(store: RunStore) -> None:
            store.save_patterns(i, patterns)
            store.save_taxa(i, taxa)
        return write

    def taxa(self, i: int, patterns, embedder: str):
        """Iteration i's patterns placed among the taxa of the iterations before (one name per pattern across
        iterations); centroids are compared only between clusterings made with the same embedder."""
        from pada.agents.clustering import embed_texts
        from pada.agents.taxonomy import assign_taxa, centroids

        earlier = [t for t in self.store.taxa() if t.iteration < i]
        iterations = sorted({t.iteration for t in earlier})
        earlier_patterns = {(j, p.cluster_id): p for j in iterations for p in self.store.patterns(j)}
        comparable = [j for j in iterations if (c := self.store.clustering(j)) and c.embedder == embedder]
        return assign_taxa(i, patterns, earlier, earlier_patterns, lambda texts: embed_texts(texts, embedder),
                           centroids(self.store.cluster_vectors([*comparable, i])),
                           self.config.clustering.match_threshold)

    def draft_strategies(self, i: int):
        from pada.agents.strategies import draft_strategies

        strategies = draft_strategies(self.store.patterns(i), self.llm("llm"), self.config.strategies,
                                      self.design_description)
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
            from pada.agents.canaries import judge_warning, summarise

            store.save_samples(i, outcome.attempts, outcome.qc_results)
            store.log_event("info", f"generation counts: {json.dumps(counts)}", iteration=i, stage=GENERATE)
            if outcome.canaries:  # planted samples: their own table, never samples or counts
                store.save_canaries(i, outcome.canaries)
                check = summarise(outcome.canaries)
                store.log_event("info", f"judge check: rejected {check['rejected']} of {check['judged']} planted "
                                        f"bad samples, accepted {check['controls_accepted']} of "
                                        f"{check['controls_judged']} training examples", iteration=i, stage=GENERATE)
                warning = judge_warning(check)
                if warning:
                    store.log_event("warning", warning, iteration=i, stage=GENERATE)
            if outcome.leaked:
                store.log_event("warning", f"dropped {len(outcome.leaked)} samples overlapping validation/test "
                                           f"questions", iteration=i, stage=GENERATE)
                store.mark_leaked([drop.sample.sample_id for drop in outcome.leaked], iteration=i)
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

    @property
    def design_description(self) -> str:
        """The task as the pattern and strategy writers see it: with what the task's samples can vary."""
        from pada.agents.generation import effective_form

        scope = effective_form(self.config.generation, self.task.sample_form).strategy_scope
        return f"{self.task_description}. {scope}" if scope else self.task_description

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
        self.by_model: dict[str, list] = {}  # model -> [calls, failed calls, first error]
        self.bar = None
        self.lock = threading.Lock()  # the generator's and the judge's clients call back from their threads

    def count(self, call: LLMCall) -> None:
        with self.lock:
            if self.bar is None:
                from tqdm.auto import tqdm

                self.bar = tqdm(desc=f"{self.stage} (iteration {self.iteration})", unit=" LLM calls")
            self.calls += 1
            tally = self.by_model.setdefault(call.model, [0, 0, None])
            tally[0] += 1
            if not call.ok:
                tally[1] += 1
                tally[2] = tally[2] or call.error
            self.bar.update(1)
            self.store.set_progress(self.iteration, self.stage, self.calls, None)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def raise_if_a_model_never_answered(self) -> None:
        """A stage in which every call to one model failed has no real output: fail the run with the cause."""
        for model, (calls, failed, error) in self.by_model.items():
            if calls and failed == calls:
                raise LLMUnavailable(f"stage {self.stage} of iteration {self.iteration}: all {calls} calls to "
                                     f"{model} failed; first error: {error}")


def start_run(config: RunConfig, runs_root=None, run_id: str | None = None) -> RunStore:
    """Create a run directory for `config` (the loop is started separately with `Pipeline(store).run()`)."""
    return RunStore.create(config.to_dict(), runs_root=runs_root, run_id=run_id)

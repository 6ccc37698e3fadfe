"""Write and read back a large synthetic run to time the run store.

    .venv/bin/python benchmarks/bench_store.py                  # 10 iterations, 20,000 samples
    .venv/bin/python benchmarks/bench_store.py --samples 200000 # stress the indexes

Writes, per iteration: predictions for 3 splits, failures, analyses of a
subsample of them (a few hundred), a clustering with 2-D points and each
point's 384-dim analysis embedding, patterns placed in one taxonomy across
iterations (most matched to an earlier taxon, one new per iteration),
strategies (+ a person's edits and a hand-written strategy), synthetic samples
of the task's training examples with every QC attempt (a third regenerated
once or twice), LLM calls and the training set (the task's examples plus the
samples accepted so far). Then times the dashboard's main queries, each on a
freshly opened store (first call, includes connecting) and warm (median of
`--repeat` calls).
Numbers are wall-clock seconds on whatever machine runs it; nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pada.records import (  # noqa: E402
    ClusteringResult,
    ClusterPoint,
    ErrorAnalysis,
    Failure,
    LLMCall,
    Pattern,
    Prediction,
    QCResult,
    Strategy,
    SyntheticSample,
)
from pada.store import RunStore, Taxon, TrainingRow, list_runs  # noqa: E402

STAGES = ("analysis", "patterns", "strategies", "generation", "qc")
MODELS = ("local/qwen2.5-coder-0.5b", "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku")
QUESTION = "A train leaves the station at 3 pm travelling at 60 km/h. " * 4  # ~60 words, like a real prompt
TOPICS = ("Unit conversion", "Rate and distance", "Percent of a whole", "Multi-step carrying", "Misread question",
          "Fractions of groups", "Off-by-one counting", "Wrong operation", "Time arithmetic", "Ratios", "Averages",
          "Money and change")
EMBEDDING_DIM = 384  # all-MiniLM-L6-v2, the default embedder
WRITTEN = "Negated conditions"  # the hand-written strategy every iteration gets


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--samples", type=int, default=20_000, help="synthetic samples in the whole run")
    parser.add_argument("--train", type=int, default=1000, help="train predictions per iteration")
    parser.add_argument("--validation", type=int, default=500, help="validation predictions per iteration")
    parser.add_argument("--test", type=int, default=500, help="test predictions per iteration")
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--analysed", type=int, default=250, help="validation failures analysed per iteration")
    parser.add_argument("--llm-calls", type=int, default=5000, help="LLM calls recorded per iteration")
    parser.add_argument("--repeat", type=int, default=5, help="warm repetitions per query")
    parser.add_argument("--runs-dir", help="where to write the run (default: a temporary directory, removed after)")
    return parser.parse_args()


# ------------------------------------------------------------------ records


def evaluation(split: str, n: int, accuracy: float, rng: random.Random) -> tuple[list[Prediction], list[Failure]]:
    predictions, failures = [], []
    for i in range(n):
        correct = rng.random() < accuracy
        predictions.append(Prediction(id=f"{split}-{i}", split=split, prediction="The answer is B", extracted="B",
                                      correct=correct, metrics={"f1": float(correct)}))
        if not correct:
            failures.append(Failure(id=f"{split}-{i}", split=split, input=QUESTION, ground_truth="C",
                                    prediction="The answer is B", extracted="B"))
    return predictions, failures


def analysis_records(failures: list[Failure], k: int, taxa: list[Taxon], centres: np.ndarray, rng: random.Random):
    """Analyses, a clustering (with embeddings), patterns and strategies of one iteration's analysed
    `failures`; cluster c is the pattern of `taxa[c]`, its points scattered around that taxon's `centres` row."""
    analyses = [ErrorAnalysis(failure_id=f.id, sample_idx=i, error_cause="confuses speed with distance " * 3,
                              scenario_category=f"Scenario {rng.randrange(12)}") for i, f in enumerate(failures)]
    clusters = [rng.randrange(k) for _ in failures]
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 0.6, (len(failures), EMBEDDING_DIM))
    vectors = centres[[taxa[c].taxon_id for c in clusters]] + noise / np.sqrt(EMBEDDING_DIM)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # unit length, as the embedder gives them
    points = [ClusterPoint(failure_id=f.id, cluster_id=c, x=rng.gauss(0, 3), y=rng.gauss(0, 3), vector=v.tolist())
              for f, c, v in zip(failures, clusters, vectors, strict=True)]
    clustering = ClusteringResult(k=k, inertia_curve=[(n, 100.0 / n) for n in range(2, 16)], points=points,
                                  embedder="all-MiniLM-L6-v2")
    names = [own_name(taxon, rng) for taxon in taxa]
    patterns = [Pattern(cluster_id=c, category_name=names[c], error_pattern="misreads units " * 5,
                        representative_samples=[p.failure_id for p in points if p.cluster_id == c][:5])
                for c in range(k)]
    strategies = [Strategy(cluster_id=c, category_name=names[c], strategy_name=f"Strategy {c}",
                           generation_approach="rewrite with different units " * 4, key_elements=["units", "steps"])
                  for c in range(k)]
    return analyses, clustering, patterns, strategies


def iteration_taxa(iteration: int, k: int, known: list[Taxon], rng: random.Random) -> list[Taxon]:
    """The taxon of each of the iteration's k clusters, as the patterns stage matches them: in the first
    iteration all new; later, k - 1 matched one-to-one to earlier taxa and the last cluster a new taxon."""
    first = {}
    for taxon in known:
        first.setdefault(taxon.taxon_id, taxon)
    if not first:
        return [Taxon(iteration, c, c, None, TOPICS[c % len(TOPICS)]) for c in range(k)]
    matched = rng.sample(sorted(first), k - 1)
    fresh = max(first) + 1
    return [Taxon(iteration, c, t, round(rng.uniform(0.6, 0.98), 4), first[t].display_name)
            for c, t in enumerate(matched)] + [Taxon(iteration, k - 1, fresh, None, TOPICS[fresh % len(TOPICS)])]


def own_name(taxon: Taxon, rng: random.Random) -> str:
    """The iteration's own pattern name: the taxon's name, or (as an LLM names it anew) a variant of it."""
    return taxon.display_name if rng.random() < 0.5 else f"{taxon.display_name} in word problems"


def sample_records(iteration: int, n: int, k: int, n_train: int, rng: random.Random):
    """`n` samples; about a third need a second and some a third attempt (as QC regenerates), each with its
    own text; pattern samples use the k drafted strategies and the hand-written one."""
    strategy_names = [f"Strategy {c}" for c in range(k)] + [WRITTEN]
    attempts, verdicts = [], []
    for i in range(n):
        branch = rng.choice(("pattern", "pattern", "error", "rephrase"))
        n_attempts = rng.choice((1, 1, 1, 1, 2, 2, 3))
        original = f"train-{rng.randrange(n_train)}"  # a regeneration rewrites the same example, same strategy
        strategy = rng.choice(strategy_names) if branch == "pattern" else None
        for attempt in range(1, n_attempts + 1):
            sample_id = f"it{iteration}-s{i}"
            attempts.append(SyntheticSample(
                sample_id=sample_id, branch=branch, attempt=attempt, based_on_example=original,
                based_on_strategy=strategy,
                messages=[{"role": "user", "content": f"{QUESTION}(attempt {attempt}: {rng.randrange(90, 200)} km)"},
                          {"role": "assistant", "content": "C " * 40}]))
            average = rng.uniform(3, 10) if attempt < n_attempts else rng.uniform(5, 10)
            verdicts.append(QCResult(sample_id=sample_id, attempt=attempt, utility=round(average),
                                     relevance=round(average), adherence=round(average), average=average,
                                     feedback="clear and on-format, but " * 3, passed=average >= 7))
    return attempts, verdicts


def review_strategies(store: RunStore, iteration: int, strategies: list[Strategy]) -> None:
    """A person's review before generation: three strategies edited, one strategy of their own added."""
    for strategy in strategies[:3]:
        edited = strategy.model_copy(update={"generation_approach": "convert every unit first " * 4})
        store.save_strategy_edit(iteration, strategy.cluster_id, edited, "ana")
    store.add_written_strategy(iteration, Strategy(
        cluster_id=-1, category_name="questions with negations", strategy_name=WRITTEN,
        generation_approach="negate one condition of the question and recompute " * 2,
        key_elements=["not", "unless", "except"]), "ana")


def llm_calls(n: int, rng: random.Random) -> list[LLMCall]:
    return [LLMCall(stage=rng.choice(STAGES), model=rng.choice(MODELS), request_hash=f"{rng.getrandbits(64):x}",
                    prompt_tokens=rng.randrange(200, 2000), completion_tokens=rng.randrange(20, 600),
                    cost_usd=rng.random() / 1000, latency_s=rng.random() * 3, cache_hit=rng.random() < 0.2)
            for _ in range(n)]


# ------------------------------------------------------------------- timing


def write_run(store: RunStore, args: argparse.Namespace) -> tuple[dict[str, float], int]:
    """Write every iteration as the loop would (one transaction per stage).

    Returns the seconds spent per kind of record and the number of sample attempts written.
    """
    rng = random.Random(0)
    seconds: dict[str, float] = {}
    n_attempts = 0

    def timed(kind: str, fn: Callable[[], object]) -> None:
        start = time.perf_counter()
        fn()
        seconds[kind] = seconds.get(kind, 0.0) + time.perf_counter() - start

    per_iteration = args.samples // args.iterations
    # the task's training examples (what samples are based on) and, added each iteration, accepted samples
    training = [TrainingRow(id=f"train-{i}", messages=[{"role": "user", "content": QUESTION},
                                                       {"role": "assistant", "content": "C"}])
                for i in range(args.train)]
    known: list[Taxon] = []
    # one direction per taxon in embedding space (more than the run will ever make)
    centres = np.random.default_rng(0).normal(size=(args.clusters + args.iterations, EMBEDDING_DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for it in range(1, args.iterations + 1):
        accuracy = 0.35 + 0.03 * it  # a few hundred validation failures per iteration, fewer each time
        evaluations = {split: evaluation(split, n, accuracy, rng)
                       for split, n in (("train", args.train), ("validation", args.validation), ("test", args.test))}
        taxa = iteration_taxa(it, args.clusters, known, rng)
        known += taxa
        failures = evaluations["validation"][1]
        analysed = sorted(rng.sample(range(len(failures)), min(args.analysed, len(failures))))
        analyses, clustering, patterns, strategies = analysis_records([failures[i] for i in analysed],
                                                                       args.clusters, taxa, centres, rng)
        attempts, verdicts = sample_records(it, per_iteration, args.clusters, args.train, rng)
        n_attempts += len(attempts)
        calls = llm_calls(args.llm_calls, rng)
        training += [TrainingRow(id=f"train-{it}-{i}", messages=a.messages) for i, a in enumerate(attempts[:500])]

        def write_evaluation(it=it, evaluations=evaluations) -> None:
            with store.transaction():
                for split, (predictions, failures) in evaluations.items():
                    store.save_predictions(it, split, predictions)
                    store.save_failures(it, split, failures)
                    store.save_metrics(it, split, {"accuracy": sum(p.correct for p in predictions) / len(predictions)})
                store.mark_stage_done(it, "evaluate", "sig")

        timed("predictions + failures", write_evaluation)
        timed("analyses", lambda it=it, a=analyses: store.complete_stage(
            it, "analysis", "sig", lambda s: s.save_analyses(it, a)))
        timed("clustering", lambda it=it, c=clustering: store.complete_stage(
            it, "cluster", "sig", lambda s: s.save_clustering(it, c)))
        timed("patterns + taxa + strategies", lambda it=it, p=patterns, t=taxa, st=strategies: store.complete_stage(
            it, "strategies", "sig", lambda s: (s.save_patterns(it, p), s.save_taxa(it, t), s.save_strategies(it, st))))
        timed("edits + a written strategy", lambda it=it, st=strategies: review_strategies(store, it, st))
        timed("samples + QC attempts", lambda it=it, a=attempts, v=verdicts: store.complete_stage(
            it, "generate", "sig", lambda s: s.save_samples(it, a, v)))
        timed("LLM calls", lambda it=it, c=calls: store.record_llm_calls(it, c))
        timed("training set", lambda it=it, t=list(training): store.complete_stage(
            it, "train_set", "sig", lambda s: s.save_training_set(it, t)))
        timed("progress + events", lambda it=it: [
            (store.set_progress(it, "finetune", step, 50), store.log_event("info", f"step {step}", it, "finetune"))
            for step in range(50)])
    return seconds, n_attempts


def time_query(store_path: Path, query: Callable[[RunStore], object], repeat: int) -> tuple[float, float, object]:
    """(first call on a fresh store, incl. connecting; median warm call; the result)."""
    start = time.perf_counter()
    store = RunStore.open(store_path)
    result = query(store)
    first = time.perf_counter() - start
    warm = []
    for _ in range(repeat):
        start = time.perf_counter()
        query(store)
        warm.append(time.perf_counter() - start)
    store.close()
    return first, statistics.median(warm), result


def dashboard_queries(last: int) -> dict[str, Callable[[RunStore], object]]:
    page_filters = dict(branch="pattern", status=["accepted_qc", "accepted_human"], min_score=7.5)
    return {
        "runs list (list_runs)": lambda s: list_runs(s.path.parent),
        "run state + data_version": lambda s: (s.state(), s.data_version()),
        "failures page (50 rows + count)": lambda s: (s.failure_rows(last, limit=50, offset=0),
                                                      s.failure_count(last)),
        "cluster points (scatter)": lambda s: s.cluster_points(last),
        "cluster vectors, every iteration (384-dim)": lambda s: s.cluster_vectors(None),
        "taxa (every iteration)": lambda s: s.taxa(),
        "samples page, filtered (50 + count)": lambda s: (s.samples(last, **page_filters, limit=50, offset=200),
                                                          s.sample_count(last, **page_filters)),
        "samples page, all iterations, by strategy": lambda s: (
            s.samples(None, strategy="Strategy 3", limit=50, offset=0), s.sample_count(None, strategy="Strategy 3")),
        "sample counts by branch x status": lambda s: s.sample_counts(last),
        "error counts per category per iteration": lambda s: s.error_counts(),
        "metric per iteration per split": lambda s: s.metrics(),
        "LLM usage per stage x model": lambda s: s.llm_usage(),
        "strategies (current, all clusters)": lambda s: s.current_strategies(last),
        "events (latest 100)": lambda s: s.events(100),
    }


def main() -> int:
    args = parse_args()
    root = Path(args.runs_dir) if args.runs_dir else Path(tempfile.mkdtemp(prefix="bench_store_"))
    try:
        store = RunStore.create({"task": "gsm8k", "method": "pada", "benchmark": vars(args)}, runs_root=root)
        for _ in range(4):  # a few other runs for the runs list
            RunStore.create({"task": "arc_challenge", "method": "vanilla"}, runs_root=root).close()
        start = time.perf_counter()
        seconds, n_attempts = write_run(store, args)
        total = time.perf_counter() - start
        print(f"run: {store.path}")
        print(f"wrote {args.iterations} iterations, {store.sample_count()} samples "
              f"({n_attempts} attempts with QC), "
              f"{len(store.llm_calls(limit=None))} LLM calls in {total:.2f} s")
        for kind, value in seconds.items():
            print(f"  write {kind:<28} {value:7.3f} s")
        size = sum(p.stat().st_size for p in store.path.glob("run.db*"))
        print(f"database size (with WAL): {size / 1e6:.1f} MB")
        store.close()

        print(f"\n{'dashboard query':<45} {'first':>8} {'warm':>8}   rows")
        for name, query in dashboard_queries(args.iterations).items():
            first, warm, result = time_query(store.path, query, args.repeat)
            print(f"{name:<45} {first:8.4f} {warm:8.4f}   {_rows(result)}")
    finally:
        if not args.runs_dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _rows(result: object) -> str:
    if isinstance(result, tuple):
        return " + ".join(_rows(part) for part in result)
    if isinstance(result, list):
        return str(len(result))
    return "1" if result is not None else "0"


if __name__ == "__main__":
    sys.exit(main())

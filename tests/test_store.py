"""The run store: round trips, versions, statuses, atomicity, migrations, threads."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pada.records import (
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
from pada.store import SCHEMA_VERSION, RunStore, StoreError, TrainingRow, layout, list_runs, runs_root
from pada.store.schema import migrate

CONFIG = {"task": "arc_challenge", "method": "pada", "iterations": 3}


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    with RunStore.create(CONFIG, runs_root=tmp_path) as created:
        yield created


def sample(sample_id: str, *, attempt: int = 1, branch: str = "pattern", strategy: str | None = "Units",
           text: str = "q") -> SyntheticSample:
    return SyntheticSample(
        sample_id=sample_id, branch=branch, based_on_strategy=strategy if branch == "pattern" else None,
        based_on_example=f"train-{sample_id}", attempt=attempt,
        messages=[{"role": "user", "content": f"{text} {attempt}"}, {"role": "assistant", "content": "a"}],
    )


def qc(sample_id: str, average: float, *, attempt: int = 1, threshold: float = 7.0) -> QCResult:
    return QCResult(sample_id=sample_id, attempt=attempt, utility=int(average), relevance=int(average),
                    average=average, feedback=f"scored {average}", passed=average >= threshold)


def strategy(cluster_id: int, name: str) -> Strategy:
    return Strategy(cluster_id=cluster_id, category_name=f"cat{cluster_id}", strategy_name=name,
                    generation_approach="vary numbers", key_elements=["units", "steps"])


# ------------------------------------------------------------------ opening


def test_create_gives_readable_unique_ids_and_open_finds_the_run(tmp_path, monkeypatch):
    first = RunStore.create(CONFIG, runs_root=tmp_path)
    assert re.fullmatch(r"\d{8}-\d{6}-arc_challenge-pada", first.run_id)
    monkeypatch.setattr(layout, "readable_run_id", lambda config: first.run_id)  # same second again
    second = RunStore.create(CONFIG, runs_root=tmp_path)
    assert re.fullmatch(re.escape(first.run_id) + r"-[0-9a-f]{4}", second.run_id)
    monkeypatch.undo()

    assert RunStore.open(first.run_id, runs_root=tmp_path).path == first.path
    assert RunStore.open(first.path).path == first.path
    assert RunStore.open(first.db_path).path == first.path
    assert RunStore.open(first.run_id, runs_root=tmp_path).config() == CONFIG
    with pytest.raises(StoreError, match="no run 'nope'"):
        RunStore.open("nope", runs_root=tmp_path)

    named = RunStore.create({"task": "gsm8k"}, runs_root=tmp_path, run_id="baseline-1")
    assert named.run_id == "baseline-1" and named.state().status == "created"
    with pytest.raises(StoreError, match="already exists"):
        RunStore.create({"task": "gsm8k"}, runs_root=tmp_path, run_id="baseline-1")
    with pytest.raises(ValueError):
        RunStore.create({"task": "gsm8k"}, runs_root=tmp_path, run_id="../escape")
    with pytest.raises(ValueError, match="JSON"):
        RunStore.create({"task": object()}, runs_root=tmp_path)


def test_a_run_being_created_has_no_run_db_until_it_is_complete(tmp_path, monkeypatch):
    # `pada status`, the dashboard and `pada runs` poll for run.db while a run starts: they must never find an
    # empty database (a CI run caught the kill -9 test opening one between its creation and its schema).
    import pada.store.run_store as run_store_module

    seen = []
    real_migrate = run_store_module.migrate

    def watching_migrate(conn, *args, **kwargs):
        seen.append(sorted(path.name for path in tmp_path.rglob("*") if path.is_file()))
        return real_migrate(conn, *args, **kwargs)

    monkeypatch.setattr(run_store_module, "migrate", watching_migrate)
    store = RunStore.create(CONFIG, runs_root=tmp_path, run_id="starting")
    assert "run.db" not in seen[0]  # the schema is written before the database takes its name
    assert [path.name for path in store.path.iterdir() if path.name.startswith(".")] == []  # no staging left
    monkeypatch.undo()
    with RunStore.open(store.path, readonly=True) as viewer:
        assert viewer.state().status == "created" and viewer.config() == CONFIG


def test_runs_root_prefers_argument_then_environment_then_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PADA_RUNS_DIR", raising=False)
    assert runs_root() == tmp_path / "runs"
    monkeypatch.setenv("PADA_RUNS_DIR", str(tmp_path / "env"))
    assert runs_root() == tmp_path / "env"
    assert runs_root(tmp_path / "arg") == tmp_path / "arg"
    store = RunStore.create(CONFIG)
    assert store.path.parent == tmp_path / "env"


def test_paths_for_adapters_and_caches(store):
    assert store.adapter_dir(2) == store.path / "adapters" / "iter-2"
    assert not store.adapter_dir(2).exists()  # the trainer creates it
    assert store.llm_cache_dir().is_dir() and store.llm_cache_dir().parent == store.path / "cache"


def test_connection_settings(store):
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # WAL is a property of the file: a plain connection sees it too.
    raw = sqlite3.connect(store.db_path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


# ------------------------------------------------------------- round trips


def test_run_state_round_trip(store):
    store.set_status("running")
    store.set_current(2, "generate")
    store.set_pid(4242)
    state = store.state()
    assert (state.status, state.iteration, state.stage, state.pid) == ("running", 2, "generate", 4242)
    assert state.error is None
    store.set_status("failed", error="CUDA out of memory")
    assert store.state().error == "CUDA out of memory"
    store.set_status("running")
    assert store.state().error is None
    with pytest.raises(ValueError, match="run status"):
        store.set_status("exploded")


def test_every_record_kind_round_trips(store):
    predictions = [Prediction(id="v1", split="validation", prediction="B", extracted="B", correct=False),
                   Prediction(id="v2", split="validation", prediction="C", correct=True, metrics={"f1": 1.0})]
    failures = [Failure(id="v1", split="validation", input="Q?", ground_truth="A", prediction="B", extracted="B")]
    analyses = [ErrorAnalysis(failure_id="v1", sample_idx=0, error_cause="misread", scenario_category="Units"),
                ErrorAnalysis(failure_id="v9", sample_idx=1, ok=False, raw="not json")]
    clustering = ClusteringResult(k=2, inertia_curve=[(2, 10.5), (3, 7.25)], embedder="all-MiniLM-L6-v2",
                                  points=[ClusterPoint(failure_id="v1", cluster_id=1, x=0.5, y=-1.25)])
    patterns = [Pattern(cluster_id=1, category_name="Units", error_pattern="drops units",
                        representative_samples=["v1"])]
    strategies = [strategy(1, "Units drill")]
    samples = [sample("s1"), sample("s1", attempt=2), sample("s2", branch="error")]
    verdicts = [qc("s1", 5.0), qc("s1", 8.0, attempt=2)]
    calls = [LLMCall(stage="analysis", model="local/qwen", request_hash="h1", prompt_tokens=100,
                     completion_tokens=20, cost_usd=0.01, latency_s=1.5),
             LLMCall(stage="analysis", model="local/qwen", request_hash="h1", cache_hit=True)]
    training = [TrainingRow(id="train-1", messages=[{"role": "user", "content": "q"},
                                                    {"role": "assistant", "content": "a"}])]

    store.save_predictions(1, "validation", predictions)
    store.save_failures(1, "validation", failures)
    store.save_analyses(1, analyses)
    store.save_clustering(1, clustering)
    store.save_patterns(1, patterns)
    store.save_strategies(1, strategies)
    store.save_samples(1, samples, verdicts)
    store.record_llm_calls(1, calls)
    store.save_training_set(1, training)
    store.save_metrics(1, "validation", {"accuracy": 0.5})

    reopened = RunStore.open(store.path)  # a fresh connection reads what was committed
    assert reopened.predictions(1, "validation") == predictions
    assert reopened.predictions(1, "validation", correct=False) == predictions[:1]
    assert reopened.failures(1) == failures
    assert reopened.analyses(1) == analyses
    assert reopened.clustering(1) == clustering
    assert reopened.clustering(2) is None
    assert reopened.patterns(1) == patterns
    assert reopened.current_strategies(1) == strategies
    assert [row.sample for row in reopened.samples(1)] == [samples[1], samples[2]]  # latest attempt each
    history = reopened.sample_history(1, "s1")
    assert [(a.sample, a.qc) for a in history] == list(zip(samples[:2], verdicts, strict=True))
    assert reopened.llm_calls(1) == calls
    assert reopened.training_set(1) == training
    assert [(m.iteration, m.split, m.name, m.value) for m in reopened.metrics()] == [(1, "validation", "accuracy", 0.5)]
    assert reopened.iterations() == [1]


def test_progress_and_events(store):
    store.set_progress(1, "evaluate", 10, 500)
    store.set_progress(1, "evaluate", 20, 500)
    store.set_progress(1, "analysis", 0)
    assert [(p.stage, p.done, p.total) for p in store.progress(1)] == [("evaluate", 20, 500), ("analysis", 0, None)]
    store.log_event("info", "started", iteration=1, stage="evaluate")
    store.log_event("warning", "3 analyses did not parse", iteration=1, stage="analysis")
    store.log_event("error", "judge timed out")
    assert [e.message for e in store.events()] == ["judge timed out", "3 analyses did not parse", "started"]
    assert [e.level for e in store.events(min_level="warning")] == ["error", "warning"]
    assert [e.stage for e in store.events(limit=5, iteration=1)] == ["analysis", "evaluate"]
    with pytest.raises(ValueError):
        store.log_event("loud", "x")


def test_saving_twice_replaces_instead_of_duplicating(store):
    preds = [Prediction(id=f"t{i}", split="train", prediction="x", correct=i % 2 == 0) for i in range(4)]
    val = [Prediction(id="v0", split="validation", prediction="x", correct=True)]
    store.save_predictions(1, "train", preds)
    store.save_predictions(1, "validation", val)
    store.save_predictions(1, "train", preds[:3])  # a re-run: exactly its records remain
    assert [p.id for p in store.predictions(1, "train")] == ["t0", "t1", "t2"]
    assert store.predictions(1, "validation") == val  # other scopes untouched
    store.save_patterns(1, [Pattern(cluster_id=c, category_name=f"c{c}", error_pattern="p") for c in range(5)])
    store.save_patterns(1, [Pattern(cluster_id=c, category_name=f"c{c}", error_pattern="p") for c in range(3)])
    assert [p.cluster_id for p in store.patterns(1)] == [0, 1, 2]
    store.save_clustering(1, ClusteringResult(k=2, points=[ClusterPoint(failure_id="a", cluster_id=0, x=0, y=0)]))
    store.save_clustering(1, ClusteringResult(k=3, points=[ClusterPoint(failure_id="b", cluster_id=2, x=1, y=1)]))
    assert [p.failure_id for p in store.cluster_points(1)] == ["b"] and store.clustering(1).k == 3
    with pytest.raises(ValueError, match="split"):
        store.save_predictions(1, "test", val)


# --------------------------------------------------------------- strategies


def test_strategy_edit_history_and_revert(store):
    store.save_strategies(1, [strategy(0, "Units drill"), strategy(1, "Negation")])
    edited = strategy(0, "Units drill v2")
    assert store.save_strategy_edit(1, 0, edited, author="ana") == 2
    assert store.current_strategies(1) == [edited, strategy(1, "Negation")]

    assert store.revert_strategy(1, 0, version=1, author="ben") == 3
    history = store.strategy_history(1, 0)
    assert [(v.version, v.source, v.author, v.reverted_from) for v in history] == [
        (1, "drafted", "agent", None), (2, "edited", "ana", None), (3, "reverted", "ben", 1)]
    assert history[2].strategy == history[0].strategy == store.current_strategies(1)[0]
    assert [v.version for v in store.strategy_history(1, 1)] == [1]  # other clusters untouched

    with pytest.raises(StoreError, match="no strategy version 9"):
        store.revert_strategy(1, 0, version=9, author="ben")
    with pytest.raises(ValueError, match="cluster"):
        store.save_strategy_edit(1, 0, strategy(1, "wrong cluster"), author="ana")
    store.save_strategies(1, [strategy(0, "redrafted")])  # a re-run of the stage starts over
    assert [v.version for v in store.strategy_history(1, 0)] == [1] and store.strategy_history(1, 1) == []


# ------------------------------------------------------------------ samples


def make_samples(store: RunStore, iteration: int = 1) -> None:
    """30 samples: 3 branches x 10; scores 1..10 (passed from 7); s0..s4 have a second attempt."""
    samples, verdicts = [], []
    for i in range(30):
        branch = ("pattern", "error", "rephrase")[i % 3]
        strat = ("Units", "Negation")[i % 2]
        samples.append(sample(f"s{i}", branch=branch, strategy=strat))
        verdicts.append(qc(f"s{i}", float(i % 10 + 1)))
        if i < 5:  # regenerated after a failed first attempt
            samples.append(sample(f"s{i}", branch=branch, strategy=strat, attempt=2))
            verdicts.append(qc(f"s{i}", 9.0, attempt=2))
    store.save_samples(iteration, samples, verdicts)


def test_sample_filters_paging_and_counts(store):
    make_samples(store)
    assert store.sample_count(1) == 30
    assert store.sample_count(1, branch="pattern") == 10
    assert store.sample_count(1, branch="pattern", strategy="Units") == 5  # i % 6 == 0
    assert all(s.sample.based_on_strategy == "Negation" for s in store.samples(1, strategy="Negation", limit=None))
    high = store.samples(1, min_score=7, max_score=9, limit=None)
    assert high and all(7 <= s.score <= 9 for s in high)
    assert len(high) == store.sample_count(1, min_score=7, max_score=9)
    assert store.sample_count(1, status="accepted_qc") + store.sample_count(1, status="rejected_qc") == 30
    assert store.sample_count(1, status=["accepted_qc", "rejected_qc"]) == 30

    pages = [store.samples(1, limit=7, offset=o) for o in range(0, 30, 7)]
    ids = [s.sample.sample_id for page in pages for s in page]
    assert ids == [f"s{i}" for i in range(30)]  # generation order, no overlap, nothing missed

    first = store.samples(1, limit=1)[0]
    assert (first.sample.attempt, first.n_attempts, first.score, first.status) == (2, 2, 9.0, "accepted_qc")
    assert [a.qc.average for a in store.sample_history(1, "s0")] == [1.0, 9.0]
    counts = {(c["branch"], c["status"]): c["count"] for c in store.sample_counts(1)}
    assert sum(counts.values()) == 30
    with pytest.raises(ValueError, match="sample status"):
        store.samples(1, status="maybe")


def test_bulk_status_update_is_kept_through_later_qc_writes(store):
    make_samples(store)
    rejected = [s.sample.sample_id for s in store.samples(1, status="rejected_qc", limit=None)]
    assert store.set_sample_status(rejected[:3], "accepted_human", author="ana") == 3
    assert store.set_sample_status(["s29", "missing"], "rejected_human", author="ana") == 1
    reviewed = store.samples(1, status="accepted_human", limit=None)
    assert {s.sample.sample_id for s in reviewed} == set(rejected[:3])
    assert all(s.status_author == "ana" and s.status_at for s in reviewed)
    # A late QC write for a reviewed sample keeps the person's decision.
    store.save_samples(1, [], [qc(rejected[0], 2.0)], replace=False)
    assert store.samples(1, status="accepted_human", limit=None)[0].score == 2.0
    accepted = {s.sample_id for s in store.accepted_samples(1)}
    assert set(rejected[:3]) <= accepted and "s29" not in accepted
    assert len(accepted) == store.sample_count(1, status=["accepted_qc", "accepted_human"])
    with pytest.raises(ValueError):
        store.set_sample_status(["s1"], "approved", author="ana")


def test_generation_then_incremental_qc_and_regeneration(store):
    store.save_samples(1, [sample("a"), sample("b")])
    assert {s.status for s in store.samples(1)} == {"pending_qc"}
    assert store.sample_count(1, min_score=0) == 0  # unjudged samples match no score filter
    store.save_samples(1, [sample("a", attempt=2, text="better")], [qc("a", 4.0), qc("b", 8.0)], replace=False)
    rows = {s.sample.sample_id: s for s in store.samples(1)}
    assert rows["a"].status == "pending_qc" and rows["a"].sample.attempt == 2 and rows["a"].qc is None
    assert rows["b"].status == "accepted_qc"
    store.save_samples(1, [], [qc("a", 3.0, attempt=2)], replace=False)
    assert store.samples(1, status="rejected_qc")[0].n_attempts == 2
    version = store.data_version()
    with pytest.raises(StoreError, match="unknown sample"):
        store.save_samples(1, [sample("c")], [qc("zzz", 9.0)], replace=False)
    assert store.sample_count(1) == 2 and store.data_version() == version  # nothing partial
    store.save_samples(1, [sample("d")])  # replace=True: the iteration's samples are exactly these
    assert [s.sample.sample_id for s in store.samples(1)] == ["d"]
    assert store.sample_history(1, "a") == []  # attempts went with their sample


def test_same_sample_id_in_two_iterations_are_two_samples(store):
    store.save_samples(1, [sample("s0")], [qc("s0", 9.0)])
    store.save_samples(2, [sample("s0", text="other")], [qc("s0", 2.0)])
    assert store.samples(1)[0].status == "accepted_qc" and store.samples(2)[0].status == "rejected_qc"
    assert store.set_sample_status(["s0"], "rejected_human", "ana", iteration=1) == 1
    assert store.samples(2)[0].status == "rejected_qc"
    assert store.sample_count(None) == 2


# ------------------------------------------------------- stages, atomicity


def test_stage_completion_is_atomic(store):
    failures = [Failure(id=f"v{i}", split="validation", input="q", ground_truth="a", prediction="b")
                for i in range(3)]
    version = store.data_version()

    def write_then_crash(s: RunStore) -> None:
        s.save_failures(1, "validation", failures)
        s.save_analyses(1, [ErrorAnalysis(failure_id="v0", sample_idx=0, error_cause="x")])
        raise RuntimeError("killed mid-stage")

    with pytest.raises(RuntimeError):
        store.complete_stage(1, "evaluate", "sig-1", write_then_crash)
    assert store.failures(1) == [] and store.analyses(1) == []
    assert not store.stage_done(1, "evaluate") and store.data_version() == version

    store.complete_stage(1, "evaluate", "sig-1", lambda s: s.save_failures(1, "validation", failures))
    assert store.failures(1) == failures and store.data_version() == version + 1  # one transaction, one bump
    assert store.stage_done(1, "evaluate") and store.stage_done(1, "evaluate", "sig-1")
    assert not store.stage_done(1, "evaluate", "sig-2")  # settings changed: run it again
    with store.transaction():
        store.save_analyses(1, [])
        store.mark_stage_done(1, "analysis", "sig-a")
    assert store.completed_stages(1) == ["evaluate", "analysis"]
    assert store.stage_signature(1, "analysis") == "sig-a"
    store.forget_stage(1, "evaluate")
    assert store.completed_stages(1) == ["analysis"] and store.failures(1) == failures


def test_nested_transaction_rolls_back_only_the_inner_block(store):
    with store.transaction():
        store.log_event("info", "kept")
        with pytest.raises(KeyError), store.transaction():
            store.log_event("info", "dropped")
            raise KeyError("inner")
        store.set_status("running")
    assert [e.message for e in store.events()] == ["kept"] and store.state().status == "running"


KILL_SCRIPT = """
import os, signal, sys
from pada.records import Failure
from pada.store import RunStore
store = RunStore.open(sys.argv[1])
with store.transaction():
    store.save_failures(1, "validation", [Failure(id=f"v{i}", split="validation", input="q",
                                                   ground_truth="a", prediction="b") for i in range(2000)])
    store.log_event("info", "half-way")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_mid_transaction_leaves_nothing(store):
    store.log_event("info", "before")
    result = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(store.path)],
                            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    reopened = RunStore.open(store.path)
    assert reopened.failures(1) == [] and [e.message for e in reopened.events()] == ["before"]
    reopened.log_event("info", "after")  # the killed writer left no lock behind
    assert len(reopened.events()) == 2


# ---------------------------------------------------------------- migration


def test_migration_from_version_1_keeps_data_and_adds_indexes(tmp_path):
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    conn = sqlite3.connect(run_dir / "run.db", isolation_level=None)
    assert migrate(conn, target=1) == 1  # the schema as the first release wrote it
    conn.execute("INSERT INTO run VALUES (1, 'old-run', 't0', 't0', ?, 'completed', 3, 'train', NULL, NULL)",
                 (json.dumps(CONFIG),))
    conn.execute("INSERT INTO samples (iteration, sample_id, branch, strategy, based_on_example, status, "
                 "sample_json) VALUES (1, 's1', 'error', NULL, 'e1', 'accepted_qc', ?)",
                 (sample("s1", branch="error").model_dump_json(),))
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'samples_by_status'").fetchall()
    conn.close()

    store = RunStore.open(run_dir)
    conn = store._conn()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'samples_by_status'").fetchall()
    assert store.state().status == "completed" and store.config() == CONFIG
    assert store.samples(1, status="accepted_qc")[0].sample == sample("s1", branch="error")
    assert RunStore.open(run_dir).data_version() == 0  # opening again migrates nothing


def test_newer_or_foreign_databases_are_refused(tmp_path):
    newer = tmp_path / "newer"
    newer.mkdir()
    conn = sqlite3.connect(newer / "run.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        RunStore.open(newer)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "run.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable run database"):
        RunStore.open(garbage)


# --------------------------------------------------------- threads, listing


def test_reader_thread_sees_consistent_data_while_writing(store):
    errors, seen = [], []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                version, count = store.data_version(), store.sample_count(1)
                assert count % 10 == 0  # each write adds 10 samples in one transaction
                seen.append((version, count, id(store._conn())))
        except Exception as err:  # noqa: BLE001 - reported to the main thread below
            errors.append(err)

    reader = threading.Thread(target=read)
    reader.start()
    for batch in range(40):
        store.save_samples(1, [sample(f"b{batch}-{i}") for i in range(10)], replace=False)
    stop.set()
    reader.join()
    assert not errors
    assert seen and all(later[:2] >= earlier[:2] for earlier, later in zip(seen, seen[1:], strict=False))
    assert {conn_id for *_, conn_id in seen} != {id(store._conn())}  # the reader had its own connection
    assert store.sample_count(1) == 400


def test_list_runs_newest_first_with_unreadable_runs_flagged(tmp_path):
    assert list_runs(tmp_path / "missing") == []
    old = RunStore.create({"task": {"name": "gsm8k"}}, runs_root=tmp_path, run_id="a-old")
    new = RunStore.create(CONFIG, runs_root=tmp_path, run_id="b-new")
    new.set_status("running")
    new.set_current(2, "qc")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.db").write_bytes(b"junk" * 500)
    (tmp_path / "not-a-run").mkdir()

    runs = list_runs(tmp_path)
    readable = [r for r in runs if r.status != "unreadable"]
    assert [r.run_id for r in readable] == ["b-new", "a-old"]
    assert (readable[0].task, readable[0].status, readable[0].iteration, readable[0].stage) == (
        "arc_challenge", "running", 2, "qc")
    assert readable[1].task == "gsm8k" and readable[1].path == old.path
    assert [r.run_id for r in runs if r.status == "unreadable"] == ["broken"]


def test_data_version_bumps_on_every_write_only(store):
    start = store.data_version()
    store.log_event("info", "x")
    assert store.data_version() == start + 1
    store.events(), store.samples(1), store.metrics()
    assert store.data_version() == start + 1  # reads do not bump
    with pytest.raises(ValueError), store.transaction():
        store.log_event("info", "y")
        raise ValueError("rolled back")
    assert store.data_version() == start + 1
    other = RunStore.open(store.path)  # another connection (like another process) sees the bump
    other.set_progress(1, "train", 1, 10)
    assert store.data_version() == start + 2


# ------------------------------------------------------ dashboard aggregates


def test_dashboard_aggregates(store):
    for iteration, n_fail in ((1, 4), (2, 2)):
        failures = [Failure(id=f"v{i}", split="validation", input="q", ground_truth="a", prediction="b")
                    for i in range(n_fail)]
        store.save_failures(iteration, "validation", failures)
        store.save_analyses(iteration, [ErrorAnalysis(failure_id=f.id, sample_idx=i, error_cause="c",
                                                      scenario_category="Units" if i % 2 else "Logic")
                                        for i, f in enumerate(failures[:-1])])
        store.save_clustering(iteration, ClusteringResult(k=2, points=[
            ClusterPoint(failure_id=f.id, cluster_id=i % 2, x=float(i), y=0.0) for i, f in enumerate(failures[:-1])]))
        store.save_patterns(iteration, [Pattern(cluster_id=0, category_name="Logic slips", error_pattern="p"),
                                        Pattern(cluster_id=1, category_name="Unit errors", error_pattern="p")])
        store.save_predictions(iteration, "validation", [
            Prediction(id=f"v{i}", split="validation", prediction="b", correct=i >= n_fail) for i in range(8)])
        store.save_metrics(iteration, "validation", {"accuracy": 1 - n_fail / 8})

    counts = {(c.iteration, c.category): c.count for c in store.error_counts()}
    assert counts == {(1, "Logic slips"): 2, (1, "Unit errors"): 1, (1, "Unclustered"): 1,
                      (2, "Logic slips"): 1, (2, "Unclustered"): 1}
    by_scenario = {(c.iteration, c.category): c.count for c in store.error_counts(by="scenario")}
    assert by_scenario[(1, "Unanalysed")] == 1 and by_scenario[(1, "Logic")] == 2
    assert [(m.iteration, m.value) for m in store.metrics(split="validation")] == [(1, 0.5), (2, 0.75)]
    assert [(m.iteration, m.value) for m in store.accuracy_by_iteration()] == [(1, 0.5), (2, 0.75)]
    assert store.cluster_sizes(1) == {0: 2, 1: 1}

    rows = store.failure_rows(1, cluster_id=1)
    assert len(rows) == 1 and rows[0].category_name == "Unit errors" and rows[0].analysis.scenario_category == "Units"
    assert store.failure_count(1) == 4 and store.failure_count(1, cluster_id=0) == 2
    last = store.failure_rows(1, limit=2, offset=2)[-1]
    assert last.cluster_id is None and last.analysis is None

    store.record_llm_calls(1, [
        LLMCall(stage="analysis", model="m1", request_hash="a", prompt_tokens=10, completion_tokens=5, cost_usd=0.5),
        LLMCall(stage="analysis", model="m1", request_hash="b", prompt_tokens=10, cache_hit=True),
        LLMCall(stage="qc", model="m2", request_hash="c", prompt_tokens=7, ok=False, error="timeout")])
    store.record_llm_call(2, LLMCall(stage="qc", model="m2", request_hash="d", cost_usd=0.25))
    usage = {(u["stage"], u["model"]): u for u in store.llm_usage()}
    assert usage[("analysis", "m1")]["calls"] == 2 and usage[("analysis", "m1")]["cache_hits"] == 1
    assert usage[("analysis", "m1")]["prompt_tokens"] == 20 and usage[("qc", "m2")]["failures"] == 1
    assert usage[("qc", "m2")]["cost_usd"] == pytest.approx(0.25)
    assert [u["calls"] for u in store.llm_usage(group_by=("iteration",))] == [3, 1]
    assert store.llm_usage(group_by=(), iteration=2)[0]["calls"] == 1
    with pytest.raises(ValueError):
        store.llm_usage(group_by=("prompt; DROP TABLE run",))


# ------------------------------------------------------------- training set


def test_training_set_export_loads_with_datasets(store, tmp_path):
    rows = [{"id": f"train-{i}", "messages": [{"role": "user", "content": f"q{i} é"},
                                               {"role": "assistant", "content": f"a{i}"}]} for i in range(5)]
    store.save_training_set(2, rows)
    store.save_training_set(2, rows[:4])  # replaced, not appended
    assert [r.id for r in store.training_set(2)] == [f"train-{i}" for i in range(4)]
    assert store.training_set_size(2) == 4 and store.training_set_size(3) == 0
    path = store.export_training_set(2, tmp_path / "export")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [{"messages": r["messages"]} for r in rows[:4]]

    import datasets

    loaded = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
    assert loaded.num_rows == 4 and loaded[0]["messages"][0] == {"role": "user", "content": "q0 é"}
    with pytest.raises(StoreError, match="no training set"):
        store.export_training_set(7, tmp_path / "none")

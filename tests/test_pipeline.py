"""The whole loop on a tiny model with the scripted LLM stand-in: records, growth, no leakage, pause, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_run_config
from pada.pipeline import Pipeline, start_run
from pada.store import RunStore
from pada.tasks import get_task

REPO = Path(__file__).resolve().parents[1]


def protected(store: RunStore) -> tuple[set[str], list[str]]:
    """Ids and questions of the run's validation and test sets."""
    from pada.tasks import get_task

    config = store.config()
    splits = get_task(config["task"]).splits(train_size=config["data"]["train_size"],
                                             val_size=config["data"]["val_size"],
                                             test_size=config["data"]["test_size"], seed=config["seed"])
    held_out = splits.validation + splits.test
    return {ex.id for ex in held_out}, [ex.prompt for ex in held_out]


def test_two_iterations_write_every_stage(pipeline_run):
    runs_root, run_id = pipeline_run
    with RunStore.open(run_id, runs_root=runs_root) as store:
        assert store.state().status == "completed"
        assert store.iterations() == [1, 2]
        assert set(store.completed_stages(1)) >= {"train_set", "finetune", "evaluate", "analyse", "cluster",
                                                  "patterns", "strategies", "generate"}
        assert "generate" not in store.completed_stages(2)  # the last round only evaluates and analyses
        for i in (1, 2):
            assert (store.adapter_dir(i) / "adapter_config.json").is_file()
            for split, size in (("train", 8), ("validation", 12), ("test", 12)):
                assert len(store.predictions(i, split)) == size
                assert {row.name for row in store.metrics(split=split) if row.iteration == i} >= {"accuracy"}
        failures = store.failures(1, "validation")
        analyses = store.analyses(1)
        assert failures and len(analyses) == min(10, len(failures))
        assert {a.failure_id for a in analyses} <= {f.id for f in failures}
        clustering = store.clustering(1)
        assert clustering.k >= 1 and len(clustering.points) == sum(a.ok for a in analyses)
        patterns, strategies = store.patterns(1), store.current_strategies(1)
        assert len(patterns) == clustering.k == len(strategies)
        assert all(s.strategy_name and s.key_elements for s in strategies)
        samples = store.samples(1, limit=None)
        assert samples and all(s.qc is not None for s in samples)
        assert {s.sample.branch for s in samples} <= {"pattern", "error"}
        assert store.llm_usage(group_by=("stage",))
        # LLM stages report their calls as progress (no total: QC may regenerate)
        progress = {row.stage: (row.done, row.total) for row in store.progress(1)}
        calls = sum(row["calls"] for row in store.llm_usage(iteration=1) if row["stage"] != "preflight")
        assert sum(progress[stage][0] for stage in ("analyse", "patterns", "strategies", "generate")) == calls
        assert progress["generate"][0] > 0 and progress["generate"][1] is None


def test_training_set_grows_by_the_accepted_samples(pipeline_run):
    runs_root, run_id = pipeline_run
    with RunStore.open(run_id, runs_root=runs_root) as store:
        first, second = store.training_set(1), store.training_set(2)
        accepted = store.accepted_samples(1)
        assert len(first) == 16
        assert accepted, "the scripted judge accepts well-formed samples"
        assert [row.id for row in second] == [row.id for row in first] + [s.sample_id for s in accepted]
        arc = get_task("arc_challenge")  # generated as fields, laid out by the code: options and letter
        assert all(arc.format_problem(s.question, s.messages[1]["content"]) is None for s in accepted)


def test_no_validation_or_test_example_reaches_generation_or_training(pipeline_run):
    runs_root, run_id = pipeline_run
    with RunStore.open(run_id, runs_root=runs_root) as store:
        ids, questions = protected(store)
        for i in (1, 2):
            assert not ids & {row.id for row in store.training_set(i)}
        samples = store.samples(1, limit=None)
        assert not ids & {s.sample.based_on_example for s in samples}
        train_texts = json.dumps([row.messages for row in store.training_set(2)])
        assert not [q for q in questions if q in train_texts]
    # The stand-in saw every prompt the generator and the judge were sent (saved by the fixture).
    prompts = [json.dumps(req) for req in json.loads((runs_root / "scripted_requests.json").read_text())]
    generation = [p for p in prompts if "GeneratedVariants" in p]
    assert generation
    for question in questions:
        assert not any(question in p for p in generation)


def test_pause_after_strategies_then_resume_uses_the_edited_strategy(tmp_path, tiny_slm_dir):
    from doubles.pada_script import install
    from pada.config import from_dict

    stand_in = install()
    config = from_dict(tiny_run_config(tiny_slm_dir, pause_after=["strategies"]))
    store = start_run(config, runs_root=tmp_path, run_id="paused")
    assert Pipeline(store, config).run() == "awaiting_review"
    assert store.state().status == "awaiting_review" and "generate" not in store.completed_stages(1)
    assert store.sample_count(1) == 0

    strategy = store.current_strategies(1)[0]
    edited = strategy.model_copy(update={"generation_approach": "EDITED-BY-HUMAN: vary the units in every question"})
    store.save_strategy_edit(1, strategy.cluster_id, edited, author="tester")

    stand_in.received.clear()
    pipeline = Pipeline(store, config)
    pipeline.approve_pending_review()
    assert pipeline.run() == "completed"
    prompts = [json.dumps(req) for req in stand_in.received if "GeneratedVariants" in json.dumps(req)]
    assert any("EDITED-BY-HUMAN" in p for p in prompts)
    assert store.state().status == "completed"
    store.close()


def _snapshot(store: RunStore) -> dict:
    """What must be equal between an interrupted-and-resumed run and an uninterrupted one."""
    return {
        "training": {i: [row.id for row in store.training_set(i)] for i in store.iterations()},
        "samples": sorted((s.sample.sample_id, s.status, s.n_attempts) for s in store.samples(None, limit=None)),
        "failures": {i: sorted(f.id for f in store.failures(i, "validation")) for i in store.iterations()},
        "metrics": sorted((m.iteration, m.split, m.name, round(m.value, 6)) for m in store.metrics()),
        "analyses": sorted(a.failure_id for i in store.iterations() for a in store.analyses(i)),
    }


def test_kill_9_during_generation_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_slm_dir, pipeline_run):
    import yaml

    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(tiny_run_config(tiny_slm_dir)))
    # The product installs no stand-in: the subprocesses run pada's CLI through doubles.pada_cli, which does.
    env = dict(os.environ, PADA_SCRIPTED_DELAY_S="0.3", PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))
    command = [sys.executable, "-m", "doubles.pada_cli", "run", "--config", str(config_file), "--runs-root", str(tmp_path),
               "--run-id", "killed"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    run_dir = tmp_path / "killed"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            if (run_dir / "run.db").is_file():
                with RunStore.open(run_dir) as store:
                    if len(store.llm_calls(stage="generation_pattern", limit=None)) >= 2:
                        break
            time.sleep(0.2)
        else:
            pytest.fail("the run never reached generation")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    with RunStore.open(run_dir) as store:
        assert "generate" not in store.completed_stages(1)
        paid_before = len([c for c in store.llm_calls(limit=None) if not c.cache_hit])

    resumed = subprocess.run([sys.executable, "-m", "doubles.pada_cli", "resume", "killed", "--runs-root", str(tmp_path)],
                             cwd=REPO, env=dict(env, PADA_SCRIPTED_DELAY_S="0"), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    runs_root, run_id = pipeline_run
    with RunStore.open(run_dir) as store, RunStore.open(run_id, runs_root=runs_root) as reference:
        assert store.state().status == "completed"
        assert _snapshot(store) == _snapshot(reference)
        calls = store.llm_calls(limit=None)
        paid = [c.request_hash for c in calls if not c.cache_hit]
        assert len(paid) == len(set(paid)), "a cached LLM call was paid for twice"
        assert any(c.cache_hit for c in calls) and len(paid) >= paid_before

"""Runs on Ray (`compare --executor ray`) and node-local run directories copied into the shared runs root.

One local Ray per module (`ray.init(num_cpus=2)` through `pada.executors.connect`), the tiny SLM and the
scripted stand-in: a Ray worker is another process, so each registers the stand-in itself
(`worker_process_setup_hook`, with tests/ on its PYTHONPATH).
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_run_config
from pada.cli import main
from pada.comparison import compare_runs, execute_plan, plan_runs, reusable_run, rows_for_run
from pada.config import from_dict
from pada.executors import RayExecutor, RunJob, _Snapshots, _node_copy, publish, run_job
from pada.runs import effective_status
from pada.store import RunStore, list_runs
from pada.store import lock as runner_locks

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray")
    from pada.executors import connect

    ray = connect(num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)},
                                           "worker_process_setup_hook": "doubles.pada_script.install"})
    yield ray
    ray.shutdown()


def _journal_mode(db: Path) -> int:
    """1: rollback journal, 2: WAL (the file format's read/write version bytes)."""
    return db.read_bytes()[18]


def _metrics(store: RunStore) -> list[tuple[str, int, str, float]]:
    return sorted((row.split, row.iteration, row.name, row.value) for row in store.metrics())


def test_compare_on_ray_runs_both_methods_and_matches_the_local_run(tmp_path, tiny_slm_dir, pipeline_run,
                                                                    ray_cluster, capsys):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_run_config(tiny_slm_dir)))
    root, out = tmp_path / "runs", tmp_path / "table"
    assert main(["compare", "--config", str(config_file), "--methods", "pada,vanilla", "--executor", "ray",
                 "--runs-root", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[pada seed 0] run " in printed and "submitted to Ray (2 cpus)" in printed
    assert "completed (2 of 2 done)" in printed

    runs = {run.config["method"]: run for run in list_runs(root)}
    assert set(runs) == {"pada", "vanilla"} and {run.status for run in runs.values()} == {"completed"}
    assert all((run.path / "adapters" / "iter-1").is_dir() for run in runs.values())
    with (out / "comparison_summary.csv").open() as handle:
        summary = {row["method"]: row for row in csv.DictReader(handle)}
    assert set(summary) == {"pada", "vanilla"} and summary["pada"]["ci_items"] == "12"
    # the same config run locally in-process (conftest's pipeline_run) gives the same numbers on Ray
    local_root, local_id = pipeline_run
    with RunStore.open(local_id, runs_root=local_root, readonly=True) as local, \
            RunStore.open(runs["pada"].path, readonly=True) as on_ray:
        assert _metrics(on_ray) == _metrics(local)
        assert [(r.iteration, r.value, r.synthetic) for r in rows_for_run(on_ray, "pada")] == [
            (r.iteration, r.value, r.synthetic) for r in rows_for_run(local, "pada")]

    # again: both runs are found by their config and nothing is submitted
    assert main(["compare", "--config", str(config_file), "--methods", "pada,vanilla", "--executor", "ray",
                 "--runs-root", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("reusing run") == 2 and "submitted" not in printed


def _kill_the_runner_after_evaluate(node: Path, killed: list) -> None:
    """Test helper: SIGKILL the Ray worker running the PaDA run on `node` once its first evaluation is done."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for db in node.glob("*-pada*/run.db"):
            try:
                with RunStore.open(db.parent, readonly=True) as store:
                    done = store.stage_done(1, "evaluate")
            except Exception:  # noqa: BLE001 - the copy is still being made
                done = False
            runner = runner_locks.holder(db.parent)
            if done and runner is not None and runner.pid:
                os.kill(runner.pid, signal.SIGKILL)
                killed.append(runner.pid)
                return
        time.sleep(0.05)


def test_node_local_runs_survive_a_killed_worker_are_published_and_a_failed_run_keeps_the_others(
        tmp_path, tiny_slm_dir, ray_cluster, capsys):
    root, node = tmp_path / "shared", tmp_path / "node-disk"
    good = from_dict(tiny_run_config(tiny_slm_dir))
    broken = from_dict(tiny_run_config(tmp_path / "no-such-model", method="vanilla"))
    plan = plan_runs(good, ["pada"], tag="good") + plan_runs(broken, ["vanilla"], tag="broken")
    killed: list[int] = []
    killer = threading.Thread(target=_kill_the_runner_after_evaluate, args=(node, killed))
    killer.start()
    executor = RayExecutor(node_runs_dir=str(node), cpus_per_run=1, retries=1)
    results = execute_plan(plan, runs_root=root, executor=executor)
    killer.join()

    ok, failed = results
    assert killed, "the worker was not killed: the run ended before its first evaluation was seen"
    assert ok.error is None and [row.iteration for row in ok.rows] == [1, 2] and 0 <= ok.rows[0].value <= 1
    assert failed.rows == [] and "no-such-model" in failed.error
    assert f"[broken vanilla seed 0] run {failed.run_id} failed: " in capsys.readouterr().out
    shared = root / ok.run_id
    assert _journal_mode(shared / "run.db") == 1  # rollback journal: safe on a network filesystem
    assert not (shared / "run.db-wal").exists() and (shared / "adapters" / "iter-2").is_dir()
    with RunStore.open(shared, readonly=True) as store:
        assert store.state().status == "completed"
        started = [event.message for event in store.events(limit=1000) if event.iteration == 1]
    # Ray's retry resumed the node copy: the first iteration's fine-tune and evaluation ran once
    assert started.count("finetune started") == 1 and started.count("evaluate started") == 1
    with RunStore.open(root / failed.run_id, readonly=True) as store:  # the failure is published too
        assert store.state().status == "failed" and "no-such-model" in store.state().error
    assert list(node.iterdir()) == []  # published runs leave nothing on the node's disk


def _copy_of(pipeline_run, root: Path) -> Path:
    source_root, run_id = pipeline_run
    shutil.copytree(source_root / run_id, root / run_id)
    return root / run_id


def test_publish_copies_a_consistent_database_and_the_files(tmp_path, pipeline_run):
    source = _copy_of(pipeline_run, tmp_path / "node")
    target = tmp_path / "shared" / source.name
    target.mkdir(parents=True)
    publish(source, target)
    with RunStore.open(source, readonly=True) as a, RunStore.open(target, readonly=True) as b:
        assert _metrics(a) == _metrics(b) and b.state() == a.state()
    assert _journal_mode(target / "run.db") == 1
    copied = {p.relative_to(target) for p in target.rglob("*") if p.is_file()}
    assert Path("adapters/iter-1/adapter_model.safetensors") in copied or any(
        p.parts[:2] == ("adapters", "iter-1") for p in copied)
    assert not any(p.name.startswith(".") and "partial" in p.name for p in copied)


def test_a_snapshot_in_the_shared_root_reads_as_running_and_is_never_resumed_twice(tmp_path, pipeline_run,
                                                                                   tiny_slm_dir):
    shared_root = tmp_path / "shared"
    local = _copy_of(pipeline_run, tmp_path / "node")
    shared = shared_root / local.name
    shared.mkdir(parents=True)
    config = from_dict(tiny_run_config(tiny_slm_dir))
    with RunStore.open(local) as store:
        store.set_status("running")  # as while the pipeline runs on the node
        with runner_locks.hold(shared, shared.name):  # what run_job holds while the node runs it
            snapshots = _Snapshots(local, shared, every_s=0.05)
            try:
                deadline = time.monotonic() + 10
                while not (shared / "run.db").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                store.set_current(2, "evaluate")
                wanted = store.state().updated_at
                while time.monotonic() < deadline:  # a later snapshot carries the change
                    with RunStore.open(shared, readonly=True) as snapshot:
                        if snapshot.state().updated_at == wanted:
                            break
                    time.sleep(0.05)
            finally:
                snapshots.stop()
            with RunStore.open(shared, readonly=True) as snapshot:
                state = snapshot.state()
            assert (state.iteration, state.stage, state.status) == (2, "evaluate", "running")
            assert effective_status(state.status, state.pid, shared) == "running"
            assert reusable_run(config, shared_root) is None  # not resumed while the node runs it
        # the node's task is gone without publishing: the snapshot is an interrupted run, resumed once
        assert effective_status(state.status, state.pid, shared) == "interrupted"
        assert reusable_run(config, shared_root).path == shared


def test_a_retry_on_the_same_node_resumes_the_newer_node_copy(tmp_path, pipeline_run):
    shared = _copy_of(pipeline_run, tmp_path / "shared")
    node_root = tmp_path / "node"
    local = _node_copy(shared, node_root)  # first attempt: a fresh copy of the shared run
    assert _metrics(RunStore.open(local, readonly=True)) == _metrics(RunStore.open(shared, readonly=True))
    with RunStore.open(local) as store:
        store.set_current(2, "analyse")  # the attempt got further, then died before publishing
    assert _node_copy(shared, node_root) == local
    with RunStore.open(local, readonly=True) as store:
        assert store.state().stage == "analyse"  # kept, not overwritten by the older shared copy
    with RunStore.open(shared) as store:
        store.set_current(2, "cluster")  # another node has since published a newer copy
    with RunStore.open(_node_copy(shared, node_root), readonly=True) as store:
        assert store.state().stage == "cluster"


def test_run_job_on_a_node_dir_finishes_a_completed_run_without_running_it(tmp_path, pipeline_run, tiny_slm_dir):
    shared = _copy_of(pipeline_run, tmp_path / "shared")
    job = RunJob("[pada seed 0]", str(shared), from_dict(tiny_run_config(tiny_slm_dir)))
    assert run_job(job, node_runs_dir=str(tmp_path / "node")) == "completed"
    assert not (tmp_path / "node").exists()


def test_the_local_executor_refuses_ray_options():
    from pada.errors import PadaError
    from pada.executors import LocalExecutor, executor_for

    assert isinstance(executor_for("local"), LocalExecutor)
    with pytest.raises(PadaError, match="--node-runs-dir needs --executor ray"):
        executor_for("local", node_runs_dir="/tmp/x")
    assert main(["compare", "--config", "x.yaml", "--address", "auto"]) == 2


def test_compare_runs_with_an_executor_argument_defaults_to_local(tmp_path, tiny_slm_dir, pipeline_run):
    root = tmp_path / "runs"
    _copy_of(pipeline_run, root)
    rows = compare_runs(from_dict(tiny_run_config(tiny_slm_dir)), ["pada"], runs_root=root)
    assert [row.iteration for row in rows] == [1, 2] and len(list_runs(root)) == 1


def test_a_run_stopped_after_its_job_was_made_stays_stopped_and_one_stopped_before_resumes(tmp_path, pipeline_run,
                                                                                           tiny_slm_dir):
    run_dir = _copy_of(pipeline_run, tmp_path / "runs")
    config = from_dict(tiny_run_config(tiny_slm_dir))
    with RunStore.open(run_dir) as store:
        store.set_status("stopped")  # stopped before the compare saw it: the compare resumes it
        job = RunJob("[pada seed 0]", str(run_dir), config, store.state().updated_at)
    assert run_job(job) == "completed"  # every stage was done: resuming only finishes it

    with RunStore.open(run_dir) as store:
        job = RunJob("[pada seed 0]", str(run_dir), config, store.state().updated_at)
        time.sleep(0.01)
        store.set_status("stopped")  # the stop button, after the job was submitted: a Ray retry leaves it
    assert run_job(job) == "stopped" and run_job(job, node_runs_dir=str(tmp_path / "node")) == "stopped"
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.state().status == "stopped"

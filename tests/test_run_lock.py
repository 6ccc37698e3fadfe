"""One process per run: the runner lock, and Stop signalling only the process that holds it.

The holders here are real processes (a `python -c` that takes `RunStore.runner_lock()` and waits),
because the lock is the kernel's (`flock`) and what matters is how it behaves across processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pada.dashboard import processes
from pada.config import RunConfig
from pada.runs import effective_status
from pada.store import RunLocked, RunStore
from pada.store.lock import LOCK_NAME, process_start_time

REPO = Path(__file__).resolve().parents[1]

HOLDER = """
import sys, time
from pada.store import RunStore
store = RunStore.open(sys.argv[1])
with store.runner_lock():
    if len(sys.argv) > 2:  # pretend the lock was taken by another process (pid, start time)
        with open(sys.argv[1] + "/runner.lock", "w") as handle:
            handle.write(sys.argv[2])
    store.set_pid(__import__("os").getpid())
    store.set_status("running")
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def store(tmp_path):
    with RunStore.create(RunConfig().to_dict(), runs_root=tmp_path / "runs", run_id="lock-run") as created:
        yield created


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def start_holder(store: RunStore, *extra: str, new_session: bool = True) -> subprocess.Popen:
    """A runner stand-in that holds the run's lock (in its own session, as the dashboard starts runs)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.path), *extra], stdout=subprocess.PIPE,
                              text=True, env=env(), start_new_session=new_session)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def finish(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def test_a_second_runner_exits_with_one_line_naming_the_run_and_the_holder(store):
    holder = start_holder(store)
    try:
        result = subprocess.run([sys.executable, "-m", "pada", "resume", "lock-run", "--runs-root",
                                 str(store.path.parent)], capture_output=True, text=True, env=env(), timeout=120)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "run lock-run is already running" in lines[0] and f"pid {holder.pid}" in lines[0]
        assert "resuming" not in result.stdout  # it never started
        # In-process runners are refused the same way, and leave the holder's state alone.
        with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
            store.runner_lock().__enter__()
        from pada.pipeline import Pipeline

        with pytest.raises(RunLocked, match="lock-run"):
            Pipeline(store).run()
        assert store.state().pid == holder.pid and store.state().status == "running"
        # The dashboard's Resume / Continue refuses before it spawns anything.
        with pytest.raises(ValueError, match=f"still running \\(pid {holder.pid}\\)"):
            processes.resume_run(store)
    finally:
        finish(holder)


def test_the_lock_goes_with_its_holder_however_it_dies(store):
    holder = start_holder(store)
    runner = store.runner()
    assert runner.pid == holder.pid and runner.confirmed
    assert runner.started == process_start_time(holder.pid)
    assert effective_status("running", store.state().pid, store.path) == "running"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert store.runner() is None
    assert effective_status("running", store.state().pid, store.path) == "interrupted"
    with store.runner_lock():  # free again
        with store.runner_lock():  # nested holds in one process share it
            assert store.runner().pid == os.getpid()
        assert store.runner().pid == os.getpid()
    assert store.runner() is None
    assert (store.path / LOCK_NAME).read_text() == ""  # released: the file names nobody


def test_a_read_only_view_neither_locks_nor_runs(store):
    view = RunStore.open(store.path, readonly=True)
    assert view.runner() is None
    with pytest.raises(Exception, match="read-only"):
        view.runner_lock()


def test_stop_leaves_an_unrelated_process_with_the_stored_pid_alone(store):
    """The run's process died and the system gave its pid to someone else: Stop must not kill that one."""
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        store.set_pid(bystander.pid)
        store.set_status("running")
        assert effective_status("running", bystander.pid, store.path) == "interrupted"  # nobody holds the lock
        message = processes.stop_run(store, wait_s=0)
        assert "no running process" in message
        time.sleep(0.2)
        assert bystander.poll() is None, "stop killed an unrelated process"
        assert store.state().status == "stopped" and store.state().pid is None
    finally:
        finish(bystander)


def test_stop_does_not_signal_a_pid_whose_start_time_does_not_match(store):
    """The lock is held, but the pid it names is now another process (e.g. a forked worker kept the lock)."""
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    started = process_start_time(bystander.pid)
    forged = json.dumps({"pid": bystander.pid, "started": (started or 0) + 12345, "since": None})
    holder = start_holder(store, forged)
    try:
        runner = store.runner()
        assert runner.pid == bystander.pid and not runner.confirmed
        message = processes.stop_run(store, wait_s=0)
        assert "nothing was signalled" in message
        time.sleep(0.2)
        assert bystander.poll() is None and holder.poll() is None
    finally:
        finish(holder)
        finish(bystander)


def test_stop_signals_the_lock_holder_alone_when_it_does_not_lead_its_group(store):
    """A runner started from a terminal shares its shell's process group: only it gets the SIGTERM."""
    holder = start_holder(store, new_session=False)  # in pytest's own process group
    try:
        message = processes.stop_run(store, wait_s=10)
        assert message == "stopped run lock-run"
        assert holder.wait(timeout=10) != 0
        assert store.state().status == "stopped"
    finally:
        finish(holder)


def test_a_launch_is_named_by_pid_and_start_time():
    process = subprocess.Popen(["sleep", "60"])
    try:
        launch = processes.Launch("r", process.pid, Path("log"), ("sleep",), started=process_start_time(process.pid))
        assert launch.alive
        reused = processes.Launch("r", process.pid, Path("log"), ("sleep",), started=(launch.started or 0) + 1)
        assert not reused.alive  # same pid, another process
    finally:
        finish(process)
    assert not launch.alive

"""How the runs of a plan are run: one after another in this process (`local`), or as Ray tasks (`ray`).

`pada.comparison` decides which runs there are (variant, seed, config) and creates or picks their run
directories under the runs root; an executor only runs them to their end. Ray places, retries and reports
(`max_retries`, `retry_exceptions`); PaDA records (each run in its own run store, so a retried or resumed run
carries on from its last completed stage instead of starting over).

Node-local run directories (`node_runs_dir`, for multi-node clusters): SQLite in WAL mode must not live on a
network filesystem, so a Ray task copies its run into `<node_runs_dir>/<run id>` on its node's own disk, runs
it there and copies it back into the shared runs root when it ends (`publish`: the database through SQLite's
backup API, in rollback-journal mode; other files as they are). While it runs it publishes a snapshot every
`snapshot_every_s` seconds, so the dashboard and `pada status` can read the run from the shared root; the
task holds the shared copy's runner lock meanwhile, so the snapshot reads as `running`, never as a dead run
that another `compare` would resume a second time.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pada.config import RunConfig
from pada.errors import PadaError, one_line
from pada.store import RunStore, layout
from pada.store import lock as runner_locks

EXECUTORS = ("local", "ray")
SNAPSHOT_EVERY_S = 60.0
# Not copied between a node-local run directory and the shared one: the database goes through the backup
# API, and each side's runner lock belongs to the process holding it there.
_NOT_COPIED = {layout.DB_NAME, f"{layout.DB_NAME}-wal", f"{layout.DB_NAME}-shm", runner_locks.LOCK_NAME}


@dataclass(frozen=True)
class RunJob:
    """One run to run to its end: its directory under the (shared) runs root and its config."""

    name: str  # how progress lines call it, e.g. "[pada seed 0]"
    run_dir: str
    config: RunConfig
    seen_updated_at: str = ""  # the run's `updated_at` when the job was made: a later stop is not undone

    @property
    def run_id(self) -> str:
        return Path(self.run_dir).name


@dataclass(frozen=True)
class RunOutcome:
    job: RunJob
    status: str | None  # the run's final status; None when it failed
    error: str | None = None  # one line: why it failed


# ------------------------------------------------------------------ one run, in this process


def run_job(job: RunJob, node_runs_dir: str | None = None, snapshot_every_s: float = SNAPSHOT_EVERY_S) -> str:
    """Run (or resume) `job`'s run in this process to its end; returns its final status.

    Without `node_runs_dir` it runs in place. With it, in `<node_runs_dir>/<run id>`, published back into
    `job.run_dir` as it goes and when it ends (see the module docstring)."""
    if node_runs_dir is None:
        return _run_pipeline(RunStore.open(job.run_dir), job)
    shared = Path(job.run_dir)
    with runner_locks.hold(shared, job.run_id):  # the shared copy reads as running while this node runs it
        with RunStore.open(shared, readonly=True) as store:
            finished = _finished(store, job)
        if finished:
            return finished
        local = _node_copy(shared, Path(node_runs_dir))
        store = RunStore.open(local)
        snapshots = _Snapshots(local, shared, snapshot_every_s)
        try:
            status = _run_pipeline(store, job)
        finally:
            snapshots.stop()
            store.close()
            publish(local, shared)  # also a failed or stopped run: it is resumed from the shared copy
            shutil.rmtree(local)  # published: the shared copy is the run now
        return status


def _finished(store: RunStore, job: RunJob) -> str | None:
    """The status to report without running the run: `completed` (another attempt finished it), or
    `stopped` when someone stopped it after the job was made (the dashboard's stop button ends the Ray
    worker, and Ray's retry must not start the run again)."""
    state = store.state()
    if state.status == "completed" or (state.status == "stopped" and state.updated_at > job.seen_updated_at):
        return state.status
    return None


def _run_pipeline(store: RunStore, job: RunJob) -> str:
    from pada.pipeline import Pipeline

    try:
        finished = _finished(store, job)
        if finished:
            return finished
        pipeline = Pipeline(store, job.config)
        pipeline.approve_pending_review()
        return pipeline.run()
    finally:
        store.close()


def _updated_at(run_dir: Path) -> str:
    with RunStore(run_dir, readonly=True) as store:
        return store.state().updated_at


def _node_copy(shared: Path, node_root: Path) -> Path:
    """The run's directory on this node: one left by an earlier attempt here when it is at least as new as
    the shared copy (that attempt died before publishing), else a fresh copy of the shared one."""
    local = node_root / shared.name
    if (local / layout.DB_NAME).is_file() and _updated_at(local) >= _updated_at(shared):
        return local
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    publish(shared, local)
    return local


def publish(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy run directory `source` onto `target`: changed files first, then the database as of one commit
    (`RunStore.copy_database`), so the copy never records a stage whose files it lacks."""
    source, target = Path(source), Path(target)
    _copy_changed_files(source, target)
    with RunStore(source, readonly=True) as store:
        store.copy_database(target / layout.DB_NAME)


def _copy_changed_files(source: Path, target: Path) -> None:
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        there = target / here.relative_to(source)
        there.mkdir(parents=True, exist_ok=True)
        for name in files:
            if (here == source and name in _NOT_COPIED) or name.startswith(f".{layout.DB_NAME}.partial-"):
                continue
            src, dst = here / name, there / name
            stat = src.stat()
            if dst.exists() and (dst.stat().st_size, dst.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                continue
            partial = dst.with_name(f".{name}.partial-{os.getpid()}")
            shutil.copy2(src, partial)
            os.replace(partial, dst)  # a reader sees the old file or the new one, never half of one


class _Snapshots:
    """Publishes a running node-local run into the shared runs root every `every_s` seconds."""

    def __init__(self, local: Path, shared: Path, every_s: float):
        self.local, self.shared, self.every_s = local, shared, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"snapshots-{local.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                publish(self.local, self.shared)
            except Exception as err:  # noqa: BLE001 - a missed snapshot must not stop the run; the next one retries
                print(f"snapshot of {self.local.name} into {self.shared} failed: {one_line(err)}", file=sys.stderr)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------ executors


class LocalExecutor:
    """Each run in this process, one after another, in the order given; a failing run stops the rest."""

    name = "local"

    def run(self, jobs: Iterable[RunJob]) -> list[RunOutcome]:
        return [RunOutcome(job, run_job(job)) for job in jobs]


class RayExecutor:
    """Each run as one Ray task: one GPU per run where the cluster has GPUs, else `cpus_per_run` CPUs.

    `cpus_per_run` defaults to this machine's CPU count (capped at the largest node's), so on a small box
    runs queue instead of fighting over its cores. Ray retries a run whose worker died or that raised
    (`retries` times); the retry resumes from the run store. One run's failure is reported in its outcome;
    the others carry on."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: int | None = None,
                 node_runs_dir: str | None = None, retries: int = 1, snapshot_every_s: float = SNAPSHOT_EVERY_S):
        self.address, self.cpus_per_run, self.retries = address, cpus_per_run, retries
        self.node_runs_dir = os.path.abspath(node_runs_dir) if node_runs_dir else None
        self.snapshot_every_s = snapshot_every_s

    def resources(self, ray) -> dict[str, float]:
        """What each run's task asks Ray for."""
        if ray.cluster_resources().get("GPU", 0) > 0:
            return {"num_gpus": 1, "num_cpus": self.cpus_per_run or 1}
        largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=1)
        return {"num_cpus": self.cpus_per_run or max(1, min(os.cpu_count() or 1, int(largest)))}

    def run(self, jobs: Iterable[RunJob]) -> list[RunOutcome]:
        ray = connect(self.address)
        resources = self.resources(ray)
        task = ray.remote(_ray_run_job).options(max_retries=self.retries, retry_exceptions=True, **resources)
        asked = ", ".join(f"{value:g} {key.removeprefix('num_')}" for key, value in resources.items())
        pending = {}
        for job in jobs:
            pending[task.remote(job, self.node_runs_dir, self.snapshot_every_s, os.getcwd())] = job
            print(f"{job.name} run {job.run_id} submitted to Ray ({asked})", flush=True)
        order = list(pending.values())
        outcomes: dict[str, RunOutcome] = {}
        total = len(pending)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                outcome = RunOutcome(job, ray.get(done[0]))
            except Exception as err:  # noqa: BLE001 - a RayTaskError wrapping the run's own error, or a lost worker
                outcome = RunOutcome(job, None, one_line(getattr(err, "cause", None) or err))
            outcomes[job.run_dir] = outcome
            state = outcome.status or f"failed: {outcome.error}"
            print(f"{job.name} run {job.run_id} {state} ({len(outcomes)} of {total} done)", flush=True)
        return [outcomes[job.run_dir] for job in order]


def _ray_run_job(job: RunJob, node_runs_dir: str | None, snapshot_every_s: float, driver_cwd: str) -> str:
    if os.path.isdir(driver_cwd):  # relative paths in a run config mean what they mean on the driver
        os.chdir(driver_cwd)
    return run_job(job, node_runs_dir, snapshot_every_s)


def connect(address: str | None = None, **init_options):
    """The `ray` module, connected: to the cluster at `address` (`auto`, `ray://host:10001`, host:port), else
    to the Ray this process already joined, else to a new local one. Workers find `pada` through PYTHONPATH."""
    try:
        import ray
    except ImportError:
        raise PadaError("--executor ray needs the ray package: .venv/bin/pip install -r requirements.txt") from None
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
        repo = str(Path(__file__).resolve().parents[1])
        env = init_options.pop("runtime_env", {}) or {}
        env_vars = dict(env.get("env_vars", {}))
        paths = (env_vars.get("PYTHONPATH"), os.environ.get("PYTHONPATH"), repo)
        env_vars["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
        ray.init(address=address, include_dashboard=False, runtime_env={**env, "env_vars": env_vars},
                 **init_options)
    return ray


def executor_for(name: str, **options) -> LocalExecutor | RayExecutor:
    """The executor called `name` (`EXECUTORS`); `options` are RayExecutor's and refused for `local`."""
    if name == "local":
        given = [key for key, value in options.items() if value is not None]
        if given:
            raise PadaError(f"--{given[0].replace('_', '-')} needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(**{key: value for key, value in options.items() if value is not None})
    raise PadaError(f"--executor: unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")

"""The run processes the dashboard starts and stops: launch a run or a resume as a detached
`python -m pada` process, stop one with SIGTERM, read the tail of its log; and the config a new-run
form builds.

Processes are named by pid plus start time, and a run's process is the one holding its runner
lock, never a bare stored pid the system may have reused. Nothing here imports Streamlit.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pada.dashboard.frames import ACTIVE_STATUSES
from pada.runs import process_alive, process_start_time, same_process  # noqa: F401  (the pages use them from here)
from pada.store import RunStore, runs_root
from pada.store.layout import readable_run_id

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICKSTART_CONFIG = REPO_ROOT / "configs" / "quickstart.yaml"
LAUNCH_DIR = "launches"  # under the runs root: the config and log of every run the dashboard started


@dataclass(frozen=True)
class Launch:
    """A `python -m pada` process the dashboard started."""

    run_id: str
    pid: int
    log_path: Path
    command: tuple[str, ...]
    started: int | None = None  # the process's start time: with the pid, it names this process for good

    @property
    def alive(self) -> bool:
        """The launched process is still running (not some later process that got its pid)."""
        return same_process(self.pid, self.started)


def quickstart_dict() -> dict[str, Any]:
    """The offline quickstart config, fully resolved (every field), as plain data."""
    from pada.config import RunConfig, load_config

    config = load_config(QUICKSTART_CONFIG) if QUICKSTART_CONFIG.is_file() else RunConfig()
    return config.to_dict()


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied; nested mappings are merged, not replaced."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def build_config(overrides: Mapping[str, Any], base: Mapping[str, Any] | None = None):
    """A validated `RunConfig`: the quickstart (or `base`) with the form's overrides. Raises ConfigError.

    The overrides may not turn off the code sandbox (`refuse_unsandboxed`)."""
    from pada.config import from_dict

    refuse_unsandboxed(overrides, "new run form")
    return from_dict(merged(base if base is not None else quickstart_dict(), overrides), source="new run form")


UNSANDBOXED_KEY = "allow_unsandboxed"


def refuse_unsandboxed(data: Any, source: str, where: str = "") -> None:
    """ConfigError if `data` sets `allow_unsandboxed` anywhere (`task_options.allow_unsandboxed`, ...).

    Whoever can reach the dashboard must not be able to make it run model-written code outside the
    sandbox; that choice belongs to the machine's owner, in a terminal. Only an explicit false passes.
    """
    from pada.config import ConfigError

    if isinstance(data, Mapping):
        for key, value in data.items():
            path = f"{where}{key}"
            if key == UNSANDBOXED_KEY and value not in (False, None):
                raise ConfigError(f"{source}: {path}: the dashboard does not launch runs that execute code "
                                  "without the sandbox; start such a run from a terminal on a trusted machine "
                                  "(`python -m pada run --config FILE`)")
            refuse_unsandboxed(value, source, f"{path}.")
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            refuse_unsandboxed(value, source, f"{where}{index}.")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"  # the log shows progress as it happens
    # `python -m pada` must import this checkout's package whatever the app's working directory.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _reap(process: subprocess.Popen) -> None:
    """Wait for the child in a daemon thread, so a finished run never lingers as a zombie of the app."""
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()


def _spawn(args: list[str], run_id: str, root: Path) -> Launch:
    launches = root / LAUNCH_DIR
    launches.mkdir(parents=True, exist_ok=True)
    log_path = launches / f"{run_id}.log"
    command = [sys.executable, "-m", "pada", *args]
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=REPO_ROOT, env=_child_env(), start_new_session=True)
    started = process_start_time(process.pid)  # before the reaper can let the pid go
    _reap(process)
    return Launch(run_id=run_id, pid=process.pid, log_path=log_path, command=tuple(command), started=started)


def new_run_id(config: Mapping[str, Any]) -> str:
    """`20261123-130501-arc_challenge-pada-3f2a`: readable and unique even for two clicks in one second."""
    return f"{readable_run_id(config)}-{secrets.token_hex(2)}"


def launch_run(config, root: Path | None = None, run_id: str | None = None) -> Launch:
    """Start `python -m pada run` for `config` (a RunConfig) in the background; returns at once.

    The config is written next to the log under `<runs root>/launches/`; the run
    id is chosen here so the page can select the run before its process has
    created it.
    """
    import yaml

    root = runs_root(root).resolve()
    data = config.to_dict()
    refuse_unsandboxed(data, "dashboard launch")
    run_id = run_id or new_run_id(data)
    config_path = root / LAUNCH_DIR / f"{run_id}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return _spawn(["run", "--config", str(config_path), "--runs-root", str(root), "--run-id", run_id], run_id, root)


def resume_run(store: RunStore) -> Launch:
    """Start `python -m pada resume` for the store's run in the background (after a pause, stop or crash)."""
    state = store.state()
    if state.status == "completed":
        raise ValueError(f"run {store.run_id} is already completed")
    runner = store.runner()
    if runner is not None:  # the resume would exit at once on the run's lock
        by = f"pid {runner.pid}" if runner.pid else "another process"
        raise ValueError(f"run {store.run_id} is still running ({by}); stop it first")
    root = store.path.parent.resolve()
    return _spawn(["resume", store.run_id, "--runs-root", str(root)], store.run_id, root)


def stop_run(store: RunStore, wait_s: float = 10.0) -> str:
    """SIGTERM the run's runner, wait for it to go, and record the run as stopped.

    The runner is the process holding the run's lock, confirmed by its start
    time; the pid stored in the run is never signalled on its own word (once
    the runner is gone the system may give it to any process). A runner that
    leads its own process group (the dashboard starts runs in a new session)
    gets the SIGTERM for the whole group, so every worker it spawned goes too;
    one started in a terminal gets it alone. A stage cut short is redone on
    resume (its records are written atomically with its done marker).
    """
    state = store.state()
    runner = store.runner()
    if runner is None:
        if state.status == "running":
            writer = store.writable()
            writer.set_status("stopped", error="its process had already ended")
            writer.set_pid(None)
        return f"run {store.run_id} has no running process"
    pid = runner.pid
    if not runner.confirmed:
        return (f"run {store.run_id} is locked, but pid {pid} is no longer the process that locked it "
                "(a worker it forked may still hold the lock); nothing was signalled")
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait_s
    while store.runner() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if store.runner() is not None:
        return f"sent SIGTERM to run {store.run_id} (pid {pid}); it is still shutting down"
    writer = store.writable()
    if writer.state().status in ACTIVE_STATUSES:
        writer.set_status("stopped", error="stopped from the dashboard")
        writer.set_pid(None)
    writer.log_event("warning", "stopped from the dashboard", iteration=state.iteration, stage=state.stage)
    return f"stopped run {store.run_id}"


def launch_log(root: Path | None, run_id: str) -> Path:
    return runs_root(root) / LAUNCH_DIR / f"{run_id}.log"


def log_tail(path: Path, lines: int = 30, max_bytes: int = 64_000) -> str:
    """The last `lines` lines of a log file ('' if there is none)."""
    if not path.is_file():
        return ""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - max_bytes))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])

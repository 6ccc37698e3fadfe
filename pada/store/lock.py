"""One runner per run: an exclusive `flock` on `<run dir>/runner.lock`.

Whoever runs a run's loop (`python -m pada run` / `resume`, the dashboard's
launches, `compare`, `Pipeline.run()`) holds this lock for as long as it runs;
a second runner fails at once with a one-line `RunLocked` naming the run and
the pid holding it. The kernel drops the lock when its holder dies, however it
dies (kill -9 included), so a crashed run never stays locked. The lock also
answers "is this run's runner alive, and which process is it?" without
trusting a stored pid, which the system may since have given to an unrelated
process: `holder()` reports a runner only while the lock is held, with the
pid and process start time the holder wrote into the file.

Notes: the lock is per open file, so one process may take it once per run
(nested `hold` calls in that process share it). Children started with
`subprocess` do not inherit it (close-on-exec); children forked without exec
(multiprocessing's fork) keep it until they end, which is what we want: the
run is busy while they work. Only Linux has `/proc` start times; elsewhere
the pid in the file is trusted while the lock is held.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pada.store.schema import StoreError

LOCK_NAME = "runner.lock"
# A reader probing the lock (`holder`) holds it shared for microseconds; a runner
# that finds it taken retries this long before concluding another runner has it.
PROBE_GRACE_S = 0.5


class RunLocked(StoreError):
    """Another process is running this run."""


@dataclass(frozen=True)
class Runner:
    """The process holding a run's lock, as it described itself when it took the lock."""

    pid: int | None
    started: int | None  # its start time (/proc/<pid>/stat field 22, clock ticks since boot); None off Linux
    since: str | None  # when it took the lock (UTC, ISO 8601)

    @property
    def confirmed(self) -> bool:
        """The recorded pid is still that process (not a pid the system has since reused)."""
        if not self.pid:
            return False
        current = process_start_time(self.pid)
        if self.started is None or current is None:  # no procfs: trust the pid while the lock is held
            return pid_exists(self.pid)
        return current == self.started


def process_start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), or None (no such process, no procfs)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # fields 3.. follow the parenthesised command name
    try:
        return int(fields[19])  # field 22
    except (IndexError, ValueError):
        return None


def pid_exists(pid: int) -> bool:
    """Some process (possibly a zombie) has this id."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_held: dict[str, list[int]] = {}  # lock path -> [fd, depth, owner pid], for nested holds in this process
_held_guard = threading.Lock()


@contextmanager
def hold(run_dir: str | os.PathLike, run_id: str) -> Iterator[None]:
    """Hold `run_dir`'s runner lock for the block; raise `RunLocked` if another process holds it."""
    path = str(Path(run_dir).resolve() / LOCK_NAME)
    with _held_guard:
        entry = _held.get(path)
        if entry is not None and entry[2] == os.getpid():
            entry[1] += 1
        else:
            _held[path] = [_acquire(path, run_id), 1, os.getpid()]
    try:
        yield
    finally:
        with _held_guard:
            entry = _held[path]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[path]
                _release(entry[0])


def _acquire(path: str, run_id: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise StoreError(f"cannot take run {run_id}'s runner lock {path}: {err.strerror}") from err
    deadline = time.monotonic() + PROBE_GRACE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                runner = _read(fd)
                os.close(fd)
                by = f"pid {runner.pid}" if runner.pid else "another process"
                since = f" since {runner.since[:19].replace('T', ' ')} UTC" if runner.since else ""
                raise RunLocked(f"run {run_id} is already running in {by}{since}; stop that process first "
                                f"(or wait for it to end)") from None
            time.sleep(0.02)
    pid = os.getpid()
    record = {"pid": pid, "started": process_start_time(pid),
              "since": datetime.now(UTC).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    return fd


def _release(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)  # a file nobody holds describes nobody
    except OSError:
        pass
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _read(fd: int) -> Runner:
    """What the holder wrote; it writes right after locking, so wait briefly for an empty file to fill."""
    deadline = time.monotonic() + PROBE_GRACE_S
    while True:
        text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace").strip()
        if text or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    try:
        data = json.loads(text)
        return Runner(pid=int(data["pid"]), started=data.get("started"), since=data.get("since"))
    except (ValueError, KeyError, TypeError):
        return Runner(pid=None, started=None, since=None)


def holder(run_dir: str | os.PathLike) -> Runner | None:
    """The process running this run now, or None when nobody holds its lock (read-only: changes nothing).

    A run directory without a lock file has never been run by this version of PaDA Studio, or is on a
    disk where nothing could have locked it: no runner either way.
    """
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)

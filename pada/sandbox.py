"""Run untrusted, model-written Python (HumanEval / MBPP scoring) in a throw-away sandbox.

Why: the SLM and the generator LLM write code we then execute to score it. That code may loop
forever, eat memory, fork-bomb, read secrets from the environment, or write anywhere. Every run
therefore happens in a separate process with:

* bubblewrap (`bwrap`) namespaces: no network (own network namespace with only `lo`), own PID
  namespace (everything in it dies with the sandbox), the system dirs and this Python install
  mounted read-only and nothing else of the host (no repo, no home, no data);
* a throw-away working dir ($HOME too) and a private /tmp, both size-capped tmpfs: nothing is
  written to the host's disk and there is nothing to clean up;
* when we are root: a fresh, unused uid/gid per run, without capabilities, so RLIMIT_NPROC
  really applies (the kernel ignores it for root) and concurrent runs can't touch each other;
* rlimits: address space (memory), CPU seconds, file size, open files, no core dumps, and the
  process cap above;
* a cgroup per sandbox (`_Cgroup`), so memory and tasks are capped for all its processes
  together (rlimits are per process: 4 forked children of 700 MB reached 2.8 GB under a 1 GB
  RLIMIT_AS; in a 1 GB cgroup the run peaks at 1 GB and the OOM killer stops the rest). Where no
  cgroup is writable we warn once and fall back to the rlimits (`SandboxResult.caps`);
* a seccomp filter (`_seccomp_program`): no new user namespaces inside (unshare/clone with
  CLONE_NEWUSER fail), so sandboxed code can't gain capabilities in one of its own;
* a wall-clock timeout that kills the whole process group;
* a clean environment: no API keys or proxies leak from ours.

Code scoring uses `run_checked`: a trusted tester and the untrusted worker in two sandboxes, and a
pass is only the tester writing a random per-run token to a fd the worker never holds
(`pada.tasks.code_harness` says why). `run_python`'s `passed` (exit status 0) is never a score.

Without bwrap we refuse (`SandboxUnavailable`) unless the caller opts out with
`allow_unsandboxed=True` or PADA_ALLOW_UNSANDBOXED=1; then only the rlimits, the timeout, a host
temp dir as cwd and the clean environment protect us, and the result says `sandboxed=False`.

Cost per call: one bwrap + one Python start, ~25 ms here. The rlimits are set by util-linux's
`prlimit` rather than a `preexec_fn`, so Popen can vfork: with a 3 GB parent (a loaded model) a
preexec_fn fork cost ~135 ms per call against ~2 ms this way (and preexec_fn is unsafe with threads).
"""

from __future__ import annotations

import logging
import math
import os
import resource
import secrets
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pada.errors import PadaError

OUTPUT_LIMIT_BYTES = 64 * 1024  # per stream: enough for any traceback, small enough to store
FILE_SIZE_LIMIT_BYTES = 64 * 1024 * 1024  # RLIMIT_FSIZE, and the size of each private tmpfs
PROCESS_LIMIT = 64  # RLIMIT_NPROC (processes + threads) for the per-run uid; scoring needs ~1
OPEN_FILES_LIMIT = 256
EXIT_DRAIN_S = 0.2  # after the program exits, how long we still read output its children may hold
_POLL_S = 0.1  # how often the output loop checks whether the program has exited
CPU_GRACE_S = 1  # RLIMIT_CPU = ceil(timeout) + this: the wall clock should normally fire first
SANDBOX_DIR = "/sandbox"  # the throw-away working dir inside the sandbox
PROGRAM_NAME = "program.py"
# Per-run uids come from a range no real account uses (well above the subuid/container ranges
# that start at 100000, below 2**31 for tools that store uids as signed ints).
_UID_BASE = 1_800_000_000
_UID_SPAN = 100_000_000
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
_PRIVATE_TMPFS = ("/tmp", "/dev/shm")


class SandboxUnavailable(PadaError):
    """No working bubblewrap sandbox, and the caller did not opt out of sandboxing."""


@dataclass(frozen=True)
class SandboxResult:
    """What one run did.

    `returncode` follows the shell convention (128+N when killed by signal N) and is None when
    we killed the run at the wall-clock timeout. stdout/stderr are decoded as UTF-8 (bad bytes
    replaced) and cut to OUTPUT_LIMIT_BYTES each.
    """

    passed: bool  # exit code 0 and not timed out
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool  # wall-clock timeout, or the CPU-seconds limit (SIGXCPU)
    sandboxed: bool
    caps: str = ""  # how memory and processes were capped for the whole run (see _Cgroup)
    peak_memory_bytes: int | None = None  # the run's peak memory, when its cgroup reports one


def _find_bwrap() -> str | None:
    """Path of the bubblewrap binary, or None. Tests monkeypatch this to simulate its absence."""
    return shutil.which("bwrap")


def _find_prlimit() -> str | None:
    """util-linux `prlimit`, which sets our rlimits without a fork-time preexec_fn."""
    return shutil.which("prlimit")


def run_python(
    program: str,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    allow_unsandboxed: bool = False,
) -> SandboxResult:
    """Run `program` (Python source) with this interpreter in a sandbox; return what happened.

    Inputs: the whole program, a wall-clock timeout, a memory cap (for the sandbox as a whole,
    and as address space per process, so leave room: Python maps ~30 MB, numpy ~100 MB more).
    Raises SandboxUnavailable when bwrap is missing (and no opt-out) or fails to start.
    `passed` here is only "exited 0": code scoring uses `run_checked`, never this.
    """
    return _run([_Job(program)], timeout_s, memory_mb, allow_unsandboxed)[0]


@dataclass(frozen=True)
class CheckedResult:
    """A tester/worker run (`run_checked`): passed only when the tester wrote this run's token."""

    passed: bool
    tester: SandboxResult
    worker: SandboxResult

    @property
    def timed_out(self) -> bool:
        return self.tester.timed_out


def run_checked(
    tester_program: str,
    worker_program: str,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    allow_unsandboxed: bool = False,
) -> CheckedResult:
    """Run a trusted tester and an untrusted worker, each in its own sandbox, linked by two pipes.

    Each program finds its end of the link in $PADA_CHANNEL ("read_fd write_fd"); the tester
    also gets $PADA_VERDICT_FD and $PADA_VERDICT_TOKEN (a fresh random token) and passes the run
    by writing the token to that fd. The worker's sandbox never holds the verdict fd, the token
    or any view of the tester's process, so whatever it runs cannot produce a pass.
    """
    requests_read, requests_write = os.pipe()
    answers_read, answers_write = os.pipe()
    verdict_read, verdict_write = os.pipe()
    token = secrets.token_hex(16)
    tester = _Job(tester_program, fds=(requests_write, answers_read, verdict_write), env={
        "PADA_CHANNEL": f"{requests_write} {answers_read}",
        "PADA_VERDICT_FD": str(verdict_write), "PADA_VERDICT_TOKEN": token})
    worker = _Job(worker_program, fds=(requests_read, answers_write),
                  env={"PADA_CHANNEL": f"{requests_read} {answers_write}"})
    try:
        tester_result, worker_result = _run([tester, worker], timeout_s, memory_mb, allow_unsandboxed)
    finally:
        verdict = _read_all(verdict_read)
    passed = tester_result.returncode == 0 and not tester_result.timed_out and verdict == token
    return CheckedResult(passed=passed, tester=tester_result, worker=worker_result)


def sandbox_available() -> bool:
    """True when bwrap is installed and can start a sandbox here (checked once per bwrap path)."""
    bwrap = _find_bwrap()
    return bwrap is not None and _probe_bwrap(bwrap) is None


@lru_cache(maxsize=4)
def _probe_bwrap(bwrap: str) -> str | None:
    """Start one trivial sandbox; return bwrap's error text if that fails, else None."""
    try:
        _run([_Job("pass")], timeout_s=30.0, memory_mb=512, allow_unsandboxed=False)
    except SandboxUnavailable as error:
        return str(error)
    return None


@dataclass(frozen=True)
class _Job:
    """One program to run: its source, the fds it inherits and the environment it adds."""

    program: str
    fds: tuple[int, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def _run(jobs: list[_Job], timeout_s: float, memory_mb: int, allow_unsandboxed: bool) -> list[SandboxResult]:
    """Run the jobs side by side, each sandboxed and capped, under one wall-clock deadline.

    The first job leads: once it has exited, the others get EXIT_DRAIN_S and are then killed.
    The jobs' fds are handed over: they are closed here once the processes have them.
    """
    if timeout_s <= 0 or memory_mb <= 0:
        raise ValueError(f"timeout_s and memory_mb must be positive, got {timeout_s} and {memory_mb}")
    bwrap = _find_bwrap()
    if bwrap is None and not (allow_unsandboxed or os.environ.get("PADA_ALLOW_UNSANDBOXED", "") == "1"):
        raise SandboxUnavailable(
            "Running model-written code needs the bubblewrap sandbox, but `bwrap` is not on PATH. "
            "Install it (`apt-get install bubblewrap`), or set PADA_ALLOW_UNSANDBOXED=1 to run the "
            "code without a sandbox (at your own risk: it can then read your files and use the network)."
        )
    with ExitStack() as stack:
        try:
            launches = [stack.enter_context(_launch(bwrap, job, timeout_s, memory_mb)) for job in jobs]
        finally:  # ours closed, so a side sees EOF as soon as the other side's process is gone
            for fd in {fd for job in jobs for fd in job.fds}:
                os.close(fd)
        outcomes = _collect([launch.proc for launch in launches], time.monotonic() + timeout_s)
    return [launch.result(*outcome) for launch, outcome in zip(launches, outcomes)]


# --- one sandboxed process ---------------------------------------------------------------------


class _Launch:
    """A started sandbox (or unsandboxed process) and what is needed to judge how it ended."""

    def __init__(self, proc, status_read: int | None, cgroup: _Cgroup | None):
        self.proc, self.status_read, self.cgroup = proc, status_read, cgroup
        self.status = ""

    def result(self, returncode, stdout: bytes, stderr: bytes, timed_out: bool) -> SandboxResult:
        sandboxed = self.status_read is not None
        if sandboxed and returncode not in (None, 0) and '"exit-code"' not in self.status:
            # bwrap reports "exit-code" only once the program has run; without it, bwrap itself failed.
            raise SandboxUnavailable(
                f"bubblewrap could not start a sandbox: {_decode(stderr).strip() or f'exit status {returncode}'}. "
                "Check that user namespaces are allowed here, or set PADA_ALLOW_UNSANDBOXED=1 to run "
                "model-written code without a sandbox (at your own risk)."
            )
        return _result(returncode, stdout, stderr, timed_out, sandboxed=sandboxed,
                       caps=self.cgroup.kind if self.cgroup else "per-process rlimits",
                       peak_memory_bytes=self.cgroup.peak_memory if self.cgroup else None)


@contextmanager
def _launch(bwrap: str | None, job: _Job, timeout_s: float, memory_mb: int):
    """Start one job (in bwrap when `bwrap` is given) inside its own cgroup; clean up after."""
    cgroup = _Cgroup.create(memory_mb * 1024 * 1024, PROCESS_LIMIT)
    program_fd = _program_fd(job.program)
    status_read = status_write = seccomp_fd = workdir = None
    try:
        if bwrap is not None:
            uid = _sandbox_uid()
            status_read, status_write = os.pipe()
            seccomp_fd = _seccomp_fd(bwrap)
            argv = _bwrap_argv(bwrap, uid, program_fd=program_fd, status_fd=status_write,
                               seccomp_fd=seccomp_fd, env=job.env)
            fds = (program_fd, status_write, *((seccomp_fd,) if seccomp_fd is not None else ()), *job.fds)
            env, cwd, process_limit = _clean_env(SANDBOX_DIR), None, uid is not None
        else:
            workdir = Path(tempfile.mkdtemp(prefix="pada-sandbox-"))
            (workdir / PROGRAM_NAME).write_text(job.program, encoding="utf-8")
            argv = _python_argv(str(workdir / PROGRAM_NAME))
            env, cwd, fds, process_limit = {**_clean_env(str(workdir)), **job.env}, str(workdir), job.fds, False
        if cgroup is not None:
            argv = cgroup.join_argv() + argv
        launch = _Launch(_spawn(argv, timeout_s, memory_mb, env, cwd, process_limit, fds), status_read, cgroup)
        for fd in (program_fd, status_write, seccomp_fd):
            if fd is not None:
                os.close(fd)
        program_fd = status_write = seccomp_fd = None
        try:
            yield launch
        finally:
            _kill_group(launch.proc)
            if launch.proc.poll() is None:
                launch.proc.wait()
            if cgroup is not None:
                cgroup.remove()
                cgroup = None
            if status_read is not None:
                launch.status = _read_all(status_read)
                status_read = None
    finally:
        for fd in (program_fd, status_write, seccomp_fd, status_read):
            if fd is not None:
                os.close(fd)
        if cgroup is not None:
            cgroup.remove()
        if workdir is not None:
            _remove_tree(workdir)


def _sandbox_uid() -> int | None:
    """A fresh, unused uid for this run when we are root (so limits and permissions bite), else None.

    As a normal user bwrap maps only our own uid, so the program runs as us (still confined by
    the mounts and namespaces).
    """
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None
    return _UID_BASE + secrets.randbelow(_UID_SPAN)


def _program_fd(program: str) -> int:
    """An fd holding the program, read by `bwrap --file` into the sandbox (no host file)."""
    return _memfd("pada-program", program.encode("utf-8"))


def _memfd(name: str, data: bytes) -> int:
    """A read-from-the-start fd with `data` and no host file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name)
    else:  # pragma: no cover - Linux without memfd
        fd = os.dup(tempfile.TemporaryFile().fileno())
    os.write(fd, data)  # one write: memfd never writes short
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _bwrap_argv(bwrap: str, uid: int | None, program_fd: int, status_fd: int,
                seccomp_fd: int | None = None, env: dict[str, str] | None = None) -> list[str]:
    """The bwrap command line: read-only system + Python, tmpfs cwd and /tmp, no network."""
    argv = [bwrap, "--json-status-fd", str(status_fd), "--die-with-parent", "--new-session"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    if uid is None:
        # Includes a user namespace (needed when we are not root); no capabilities in it.
        argv += ["--unshare-all", "--cap-drop", "ALL"]
    else:
        # As root, no user namespace: setpriv below switches to a real unprivileged uid instead.
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    argv += ["--hostname", "sandbox"]
    argv += _system_mount_args()
    argv += ["--proc", "/proc", "--dev", "/dev"]
    size = ["--size", str(FILE_SIZE_LIMIT_BYTES)] if "--size" in _bwrap_options(bwrap) else []
    for writable in _PRIVATE_TMPFS:  # /dev/shm: multiprocessing's semaphores live there
        argv += ["--perms", "1777", *size, "--tmpfs", writable]
    argv += _python_mount_args()  # after /tmp, so a venv under /tmp is not hidden by the tmpfs
    argv += ["--perms", "1777", *size, "--tmpfs", SANDBOX_DIR]
    argv += ["--perms", "0444", "--file", str(program_fd), f"{SANDBOX_DIR}/{PROGRAM_NAME}"]
    # The sandbox's own root (a tmpfs holding the mount points) read-only too; not recursive,
    # so /tmp and the work dir stay writable.
    argv += ["--remount-ro", "/", "--chdir", SANDBOX_DIR, "--clearenv"]
    for name, value in {**_clean_env(SANDBOX_DIR), **(env or {})}.items():
        argv += ["--setenv", name, value]
    argv += ["--"]
    if uid is not None:
        argv += [
            shutil.which("setpriv") or "setpriv",
            f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        ]
    argv += _python_argv(f"{SANDBOX_DIR}/{PROGRAM_NAME}")
    return argv


@lru_cache(maxsize=4)
def _bwrap_options(bwrap: str) -> frozenset[str]:
    """Options this bwrap knows: an old one without --size gets tmpfs mounts without a size cap."""
    try:
        help_text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(word for word in help_text.split() if word.startswith("--"))


@lru_cache(maxsize=1)
def _system_mount_args() -> tuple[str, ...]:
    """The system dirs, read-only (symlinks kept as symlinks on merged-/usr systems)."""
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return tuple(args)


@lru_cache(maxsize=1)
def _python_mount_args() -> tuple[str, ...]:
    """This Python (venv and its base install) read-only; nothing else of the host is visible.

    Directories bwrap creates on the way to a mount default to mode 0700, which an
    unprivileged uid can't traverse, so we create them 0755 first.
    """
    args: list[str] = []
    created = set(_PRIVATE_TMPFS)
    for root in _outermost(p for p in _python_roots() if not _under_system_dir(p)):
        for parent in _ancestors(root):
            if parent not in created:
                created.add(parent)
                args += ["--perms", "0755", "--dir", parent]
        args += ["--ro-bind", root, root]
    return tuple(args)


def _python_roots() -> set[str]:
    """Install dirs of this interpreter: the venv as named and resolved, and its base Python."""
    executable = sys.executable
    roots = {os.path.dirname(os.path.dirname(executable))}
    roots.add(os.path.dirname(os.path.dirname(os.path.realpath(executable))))
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        roots.update({prefix, os.path.realpath(prefix)})
    return {root for root in roots if root and root != "/"}


def _under_system_dir(path: str) -> bool:
    return any(path == top or path.startswith(top + "/") for top in _SYSTEM_DIRS)


def _outermost(paths) -> list[str]:
    """Drop paths that sit inside another path of the set (one bind covers them)."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not any(path.startswith(outer + "/") for outer in kept):
            kept.append(path)
    return kept


def _ancestors(path: str) -> list[str]:
    """'/a/b/c' -> ['/a', '/a/b'] (top-down, excluding / and the path itself)."""
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


# --- whole-run caps: cgroups --------------------------------------------------------------------

_log = logging.getLogger(__name__)
_JOIN_SCRIPT = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift; exec "$@"'


class _Cgroup:
    """A cgroup of its own for one sandbox, so memory and tasks are capped for all its processes.

    RLIMIT_AS and RLIMIT_NPROC are per process (or per uid): 4 forked children under a 1 GB
    RLIMIT_AS still reach 4 GB together. A cgroup caps the sum. Which one we use, in order:
    * cgroup v1 with `memory` and `pids` hierarchies we may write (root, or a delegated tree):
      a child of our own cgroup in each, memory.limit_in_bytes and memsw (no swap beyond it),
      pids.max;
    * cgroup v2 where our own cgroup delegates `memory` and `pids` to its children (e.g. a
      systemd service with Delegate=yes): memory.max, memory.swap.max=0, pids.max;
    * otherwise None: the per-process rlimits only, logged once as a warning and reported in
      SandboxResult.caps ("per-process rlimits"). A user's desktop session usually lands here;
      running the scorer under `systemd-run --user --scope -p MemoryMax=... -p TasksMax=...`
      (or any delegated cgroup) gives the whole scorer a cap instead.
    The sandbox joins the cgroup through a tiny `sh` before exec (no fork-time preexec_fn), so
    nothing of the program ever runs outside it. The kernel's OOM killer acts inside the cgroup.
    """

    def __init__(self, kind: str, dirs: list[Path]):
        self.kind, self.dirs, self.peak_memory = kind, dirs, None

    @classmethod
    def create(cls, memory_bytes: int, tasks: int) -> _Cgroup | None:
        layout = _cgroup_layout()
        if layout is None:
            return None
        kind, parents = layout
        name = f"pada-{os.getpid()}-{secrets.token_hex(4)}"
        cgroup = cls(kind, [parent / name for parent in parents.values()])
        try:
            for directory in cgroup.dirs:
                directory.mkdir()
            if kind == "cgroup v1":
                memory, pids = (parents["memory"] / name, parents["pids"] / name)
                (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
                _write_if_present(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
                (pids / "pids.max").write_text(str(tasks))
            else:
                (directory,) = cgroup.dirs
                (directory / "memory.max").write_text(str(memory_bytes))
                _write_if_present(directory / "memory.swap.max", "0")
                (directory / "pids.max").write_text(str(tasks))
        except OSError as error:
            _log.warning("could not set up a %s for the sandbox (%s); capping per process only", kind, error)
            cgroup.remove()
            return None
        return cgroup

    def join_argv(self) -> list[str]:
        return ["/bin/sh", "-c", _JOIN_SCRIPT, "sh", *(str(d / "cgroup.procs") for d in self.dirs), "--"]

    def remove(self) -> None:
        """Note the peak memory, kill whatever is left in the cgroup and remove it."""
        for directory in self.dirs:
            for peak in ("memory.max_usage_in_bytes", "memory.peak"):
                try:
                    self.peak_memory = int((directory / peak).read_text())
                except (OSError, ValueError):
                    pass
        for directory in self.dirs:
            _write_if_present(directory / "cgroup.kill", "1")
            deadline = time.monotonic() + 2.0
            while directory.exists():
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    break
                except OSError:  # still has processes: kill them, let the kernel reap them
                    for pid in _cgroup_pids(directory):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            pass
                    if time.monotonic() > deadline:
                        _log.warning("could not remove the sandbox cgroup %s", directory)
                        break
                    time.sleep(0.01)


def _write_if_present(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        pass


def _cgroup_pids(directory: Path) -> list[int]:
    try:
        return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


@lru_cache(maxsize=1)
def _cgroup_layout() -> tuple[str, dict[str, Path]] | None:
    """("cgroup v1" | "cgroup v2", controller -> our own cgroup dir) if we can cap there, else None."""
    root = Path("/sys/fs/cgroup")
    try:
        own = dict(line.split(":", 2)[1:] for line in Path("/proc/self/cgroup").read_text().splitlines())
    except (OSError, ValueError):
        own = {}
    v1 = {name: root / name / own[name].lstrip("/") for name in ("memory", "pids") if name in own}
    if len(v1) == 2 and all(_can_make_child(path, "cgroup.procs") for path in v1.values()):
        return "cgroup v1", v1
    if "" in own and (root / "cgroup.controllers").exists():
        parent = root / own[""].lstrip("/")
        if {"memory", "pids"} <= set(_read(parent / "cgroup.subtree_control").split()) and _can_make_child(parent, "memory.max"):
            return "cgroup v2", {"unified": parent}
    _log.warning("no writable cgroup (v1 memory+pids, or a delegated v2 one) here: sandboxes are capped "
                 "per process only (RLIMIT_AS, RLIMIT_NPROC), so several processes together can exceed the cap")
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _can_make_child(parent: Path, expected: str) -> bool:
    """Whether we may create a child cgroup under parent that has the `expected` control file."""
    probe = parent / f"pada-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
    except OSError:
        return False
    try:
        return (probe / expected).exists()
    finally:
        try:
            probe.rmdir()
        except OSError:
            pass


# --- no user namespaces inside: seccomp ---------------------------------------------------------

# Architectures we can filter: (AUDIT_ARCH_*, unshare, clone, clone3 syscall numbers).
_SECCOMP_ARCHES = {
    "x86_64": (0xC000003E, 272, 56, 435),
    "aarch64": (0xC00000B7, 97, 220, 435),
}
_CLONE_NEWUSER = 0x10000000
_SECCOMP_ALLOW, _SECCOMP_KILL, _SECCOMP_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_X32_SYSCALL_BIT = 0x40000000


@lru_cache(maxsize=1)
def _seccomp_program() -> bytes | None:
    """A classic-BPF seccomp filter: unshare/clone with CLONE_NEWUSER fail with EPERM; clone3 with
    ENOSYS (its flags sit behind a pointer BPF can't read; glibc then falls back to clone); a
    syscall of another ABI (x32, 32-bit compat) kills the process. Everything else is allowed.

    Why seccomp and not bwrap's --disable-userns: that needs bwrap >= 0.8 and a user namespace of
    our own, while as root we run the program as a fresh uid without one (setpriv). The filter
    works the same in both modes and with any bwrap that has --seccomp.
    """
    machine = os.uname().machine
    if machine not in _SECCOMP_ARCHES:
        return None
    arch, unshare, clone, clone3 = _SECCOMP_ARCHES[machine]
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    errno_eperm, errno_enosys = _SECCOMP_ERRNO | 1, _SECCOMP_ERRNO | 38
    program = [  # (code, jump if true, jump if false, k); jumps count the instructions skipped
        (ld, 0, 0, 4),                # 0: A = arch
        (jeq, 0, 11, arch),           # 1: other ABI -> 13 kill
        (ld, 0, 0, 0),                # 2: A = syscall number
        (jge, 9, 0, _X32_SYSCALL_BIT),  # 3: x32 -> 13 kill
        (jeq, 3, 0, unshare),         # 4: -> 8 check flags
        (jeq, 2, 0, clone),           # 5: -> 8 check flags
        (jeq, 5, 0, clone3),          # 6: -> 12 ENOSYS
        (ret, 0, 0, _SECCOMP_ALLOW),  # 7
        (ld, 0, 0, 16),               # 8: A = low half of the first argument (the flags)
        (jset, 1, 0, _CLONE_NEWUSER),  # 9: -> 11 EPERM
        (ret, 0, 0, _SECCOMP_ALLOW),  # 10
        (ret, 0, 0, errno_eperm),     # 11
        (ret, 0, 0, errno_enosys),    # 12
        (ret, 0, 0, _SECCOMP_KILL),   # 13
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def _seccomp_fd(bwrap: str) -> int | None:
    """An fd holding the filter for `bwrap --seccomp`, or None (then user namespaces stay open)."""
    program = _seccomp_program()
    if program is None or "--seccomp" not in _bwrap_options(bwrap):
        _warn_once("this bwrap or CPU architecture can't take our seccomp filter: sandboxed code "
                   "can create user namespaces")
        return None
    return _memfd("pada-seccomp", program)


@lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    _log.warning(message)


# --- shared helpers ----------------------------------------------------------------------------


def _python_argv(program_path: str) -> list[str]:
    # -I: ignore PYTHON* env vars, user site-packages and the script's dir on sys.path;
    # -B: no .pyc files (PYTHONDONTWRITEBYTECODE is ignored under -I).
    return [sys.executable, "-I", "-B", program_path]


def _clean_env(home: str) -> dict[str, str]:
    """The whole environment the program gets: nothing inherited from ours (API keys, proxies)."""
    single_thread = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": "/tmp" if home == SANDBOX_DIR else home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        # numpy's BLAS would start a thread per core: costly under RLIMIT_AS and RLIMIT_NPROC.
        **single_thread,
    }


def _rlimits(timeout_s: float, memory_mb: int, process_limit: bool) -> dict[int, int]:
    """The limits to set, never above our own hard limits (raising those would fail)."""
    wanted = {
        resource.RLIMIT_AS: memory_mb * 1024 * 1024,
        resource.RLIMIT_CPU: math.ceil(timeout_s) + CPU_GRACE_S,
        resource.RLIMIT_FSIZE: FILE_SIZE_LIMIT_BYTES,
        resource.RLIMIT_NOFILE: OPEN_FILES_LIMIT,
        resource.RLIMIT_CORE: 0,
    }
    if process_limit:
        # Only for the per-run uid: for a shared uid it would count all of that user's processes.
        wanted[resource.RLIMIT_NPROC] = PROCESS_LIMIT
    limits = {}
    for kind, value in wanted.items():
        hard = resource.getrlimit(kind)[1]
        limits[kind] = value if hard == resource.RLIM_INFINITY else min(value, hard)
    return limits


_PRLIMIT_FLAGS = {
    resource.RLIMIT_AS: "--as",
    resource.RLIMIT_CPU: "--cpu",
    resource.RLIMIT_FSIZE: "--fsize",
    resource.RLIMIT_NOFILE: "--nofile",
    resource.RLIMIT_CORE: "--core",
    resource.RLIMIT_NPROC: "--nproc",
}


def _with_limits(argv: list[str], limits: dict[int, int]):
    """argv prefixed by `prlimit` (fast, thread-safe), or a preexec_fn fallback: (argv, preexec_fn)."""
    prlimit = _find_prlimit()
    if prlimit is not None:
        flags = [f"{_PRLIMIT_FLAGS[kind]}={value}" for kind, value in limits.items()]
        return [prlimit, *flags, "--", *argv], None

    def set_limits() -> None:
        for kind, value in limits.items():
            resource.setrlimit(kind, (value, value))

    return argv, set_limits


def _spawn(argv, timeout_s, memory_mb, env, cwd, process_limit, pass_fds=()) -> subprocess.Popen:
    """Start argv, rlimited, in its own process group (so a kill reaches every child)."""
    argv, preexec_fn = _with_limits(argv, _rlimits(timeout_s, memory_mb, process_limit))
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=cwd, start_new_session=True, preexec_fn=preexec_fn, pass_fds=pass_fds,
    )


def _collect(procs: list[subprocess.Popen], deadline: float) -> list[tuple]:
    """Read every process's output (capped) until the first one exits or the deadline; then kill all.

    Returns (returncode, stdout bytes, stderr bytes, timed_out) per process; returncode is None
    for a process we killed (at the timeout, or still running when the leading one was done).
    Reading (and dropping) past OUTPUT_LIMIT_BYTES keeps a chatty program from blocking on a
    full pipe. Once the leading process has exited we drain for EXIT_DRAIN_S more and stop, so
    a leftover background child holding a pipe doesn't turn a pass into a timeout.
    """
    lead = procs[0]
    kept = {stream: bytearray() for proc in procs for stream in (proc.stdout, proc.stderr)}
    try:
        stop_at = deadline
        with selectors.DefaultSelector() as selector:
            for stream in kept:
                selector.register(stream, selectors.EVENT_READ)
            while selector.get_map():
                now = time.monotonic()
                if stop_at == deadline and lead.poll() is not None:
                    stop_at = min(deadline, now + EXIT_DRAIN_S)
                if now >= stop_at:
                    break
                for key, _ in selector.select(timeout=min(stop_at - now, _POLL_S)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    buffer = kept[key.fileobj]
                    room = OUTPUT_LIMIT_BYTES + 1 - len(buffer)  # +1 byte tells us we cut something
                    if room > 0:
                        buffer += chunk[:room]
        if lead.poll() is None and time.monotonic() < deadline:
            try:  # pipes closed but not yet reaped: wait, with a little slack past the deadline
                lead.wait(timeout=max(deadline - time.monotonic(), 0.0) + 1.0)
            except subprocess.TimeoutExpired:
                pass
        timed_out = lead.poll() is None
        outcomes = []
        for proc in procs:
            running = proc.poll() is None
            _kill_group(proc)
            proc.wait()
            returncode = None if running else _shell_returncode(proc.returncode)
            outcomes.append((returncode, bytes(kept[proc.stdout]), bytes(kept[proc.stderr]), timed_out))
        return outcomes
    finally:
        for proc in procs:
            _kill_group(proc)  # stragglers that closed their pipes (unsandboxed mode)
            proc.stdout.close()
            proc.stderr.close()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _shell_returncode(returncode: int) -> int:
    """Popen reports death by signal N as -N; bwrap (and shells) as 128+N. Use the latter."""
    return 128 - returncode if returncode < 0 else returncode


def _read_all(fd: int) -> str:
    """Drain and close a pipe whose writers are gone (bwrap's status fd)."""
    chunks = []
    try:
        os.set_blocking(fd, False)
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _decode(raw: bytes) -> str:
    text = raw[:OUTPUT_LIMIT_BYTES].decode("utf-8", errors="replace")
    if len(raw) > OUTPUT_LIMIT_BYTES:
        text += "\n[... output truncated]"
    return text


def _result(returncode, stdout: bytes, stderr: bytes, timed_out: bool, sandboxed: bool,
            caps: str, peak_memory_bytes: int | None) -> SandboxResult:
    timed_out = timed_out or returncode == 128 + signal.SIGXCPU  # out of CPU seconds
    return SandboxResult(caps=caps, peak_memory_bytes=peak_memory_bytes,
        passed=returncode == 0 and not timed_out,
        returncode=returncode,
        stdout=_decode(stdout),
        stderr=_decode(stderr),
        timed_out=timed_out,
        sandboxed=sandboxed,
    )


def _remove_tree(path: Path) -> None:
    """Delete the throw-away dir even if the program left read-only or unreadable entries."""

    def make_writable_and_retry(function, failed_path, _exc_info):
        try:
            os.chmod(os.path.dirname(failed_path), 0o700)
            os.chmod(failed_path, 0o700)
            function(failed_path)
        except OSError:
            pass

    shutil.rmtree(path, onerror=make_writable_and_retry)

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
* a wall-clock timeout that kills the whole process group;
* a clean environment: no API keys or proxies leak from ours.

Without bwrap we refuse (`SandboxUnavailable`) unless the caller opts out with
`allow_unsandboxed=True` or PADA_ALLOW_UNSANDBOXED=1; then only the rlimits, the timeout, a host
temp dir as cwd and the clean environment protect us, and the result says `sandboxed=False`.

Cost per call: one bwrap + one Python start, ~25 ms here. The rlimits are set by util-linux's
`prlimit` rather than a `preexec_fn`, so Popen can vfork: with a 3 GB parent (a loaded model) a
preexec_fn fork cost ~135 ms per call against ~2 ms this way (and preexec_fn is unsafe with threads).
"""

from __future__ import annotations

import math
import os
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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

    Inputs: the whole program (e.g. solution + unit tests), a wall-clock timeout, a memory cap
    (address space, so leave room: Python maps ~30 MB, numpy ~100 MB more).
    Raises SandboxUnavailable when bwrap is missing (and no opt-out) or fails to start.
    """
    if timeout_s <= 0 or memory_mb <= 0:
        raise ValueError(f"timeout_s and memory_mb must be positive, got {timeout_s} and {memory_mb}")
    bwrap = _find_bwrap()
    if bwrap is not None:
        return _run_in_bwrap(bwrap, program, timeout_s, memory_mb)
    if allow_unsandboxed or os.environ.get("PADA_ALLOW_UNSANDBOXED", "") == "1":
        return _run_unsandboxed(program, timeout_s, memory_mb)
    raise SandboxUnavailable(
        "Running model-written code needs the bubblewrap sandbox, but `bwrap` is not on PATH. "
        "Install it (`apt-get install bubblewrap`), or set PADA_ALLOW_UNSANDBOXED=1 to run the "
        "code without a sandbox (at your own risk: it can then read your files and use the network)."
    )


def sandbox_available() -> bool:
    """True when bwrap is installed and can start a sandbox here (checked once per bwrap path)."""
    bwrap = _find_bwrap()
    return bwrap is not None and _probe_bwrap(bwrap) is None


@lru_cache(maxsize=4)
def _probe_bwrap(bwrap: str) -> str | None:
    """Start one trivial sandbox; return bwrap's error text if that fails, else None."""
    try:
        _run_in_bwrap(bwrap, "pass", timeout_s=30.0, memory_mb=512)
    except SandboxUnavailable as error:
        return str(error)
    return None


# --- the sandboxed run -------------------------------------------------------------------------


def _run_in_bwrap(bwrap: str, program: str, timeout_s: float, memory_mb: int) -> SandboxResult:
    uid = _sandbox_uid()
    program_fd = _program_fd(program)
    status_read, status_write = os.pipe()
    argv = _bwrap_argv(bwrap, uid, program_fd=program_fd, status_fd=status_write)
    try:
        outcome = _spawn_and_collect(
            argv, timeout_s, memory_mb, env=_clean_env(SANDBOX_DIR), cwd=None,
            process_limit=uid is not None, pass_fds=(program_fd, status_write),
        )
    finally:
        os.close(program_fd)
        os.close(status_write)
        status = _read_all(status_read)
    returncode, stdout, stderr, timed_out = outcome
    if not timed_out and returncode != 0 and '"exit-code"' not in status:
        # bwrap reports "exit-code" only once the program has run; without it, bwrap itself failed.
        raise SandboxUnavailable(
            f"bubblewrap could not start a sandbox: {_decode(stderr).strip() or f'exit status {returncode}'}. "
            "Check that user namespaces are allowed here, or set PADA_ALLOW_UNSANDBOXED=1 to run "
            "model-written code without a sandbox (at your own risk)."
        )
    return _result(returncode, stdout, stderr, timed_out, sandboxed=True)


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
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("pada-program")
    else:  # pragma: no cover - Linux without memfd
        fd = os.dup(tempfile.TemporaryFile().fileno())
    os.write(fd, program.encode("utf-8"))  # one write: memfd never writes short
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _bwrap_argv(bwrap: str, uid: int | None, program_fd: int, status_fd: int) -> list[str]:
    """The bwrap command line: read-only system + Python, tmpfs cwd and /tmp, no network."""
    argv = [bwrap, "--json-status-fd", str(status_fd), "--die-with-parent", "--new-session"]
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
    for name, value in _clean_env(SANDBOX_DIR).items():
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


# --- the unsandboxed fallback ------------------------------------------------------------------


def _run_unsandboxed(program: str, timeout_s: float, memory_mb: int) -> SandboxResult:
    """Opt-out path: rlimits, timeout, a throw-away host dir as cwd and a clean environment only."""
    workdir = Path(tempfile.mkdtemp(prefix="pada-sandbox-"))
    try:
        program_path = workdir / PROGRAM_NAME
        program_path.write_text(program, encoding="utf-8")
        returncode, stdout, stderr, timed_out = _spawn_and_collect(
            _python_argv(str(program_path)), timeout_s, memory_mb,
            env=_clean_env(str(workdir)), cwd=str(workdir), process_limit=False,
        )
    finally:
        _remove_tree(workdir)
    return _result(returncode, stdout, stderr, timed_out, sandboxed=False)


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


def _spawn_and_collect(argv, timeout_s, memory_mb, env, cwd, process_limit, pass_fds=()):
    """Start argv in its own process group; read its output (capped) until exit or the deadline.

    Returns (returncode, stdout bytes, stderr bytes, timed_out); returncode is None after a
    timeout kill.
    """
    argv, preexec_fn = _with_limits(argv, _rlimits(timeout_s, memory_mb, process_limit))
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,  # own process group, so a timeout kill reaches every child
        preexec_fn=preexec_fn,
        pass_fds=pass_fds,
    )
    deadline = time.monotonic() + timeout_s
    try:
        stdout, stderr, timed_out = _read_until(proc, deadline)
        if not timed_out:
            try:
                # Pipes closed or program gone: reap it, with a little slack past the deadline.
                proc.wait(timeout=max(deadline - time.monotonic(), 0.0) + 1.0)
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out:
            _kill_group(proc)
            proc.wait()
            return None, stdout, stderr, True
        return _shell_returncode(proc.returncode), stdout, stderr, False
    finally:
        _kill_group(proc)  # stragglers that closed their pipes (unsandboxed mode)
        proc.stdout.close()
        proc.stderr.close()


def _read_until(proc, deadline: float) -> tuple[bytes, bytes, bool]:
    """Read both pipes until EOF or the deadline, keeping at most OUTPUT_LIMIT_BYTES (+1) of each.

    Reading (and dropping) past the limit keeps a chatty program from blocking on a full pipe.
    Once the program itself has exited we drain for EXIT_DRAIN_S more and stop, so a leftover
    background child holding the pipes (possible unsandboxed) doesn't turn a pass into a timeout.
    Returns (stdout, stderr, timed_out).
    """
    kept = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    stop_at = deadline
    with selectors.DefaultSelector() as selector:
        for stream in kept:
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            now = time.monotonic()
            if stop_at == deadline and proc.poll() is not None:
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
    timed_out = proc.poll() is None and time.monotonic() >= deadline
    return bytes(kept[proc.stdout]), bytes(kept[proc.stderr]), timed_out


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


def _result(returncode, stdout: bytes, stderr: bytes, timed_out: bool, sandboxed: bool) -> SandboxResult:
    timed_out = timed_out or returncode == 128 + signal.SIGXCPU  # out of CPU seconds
    return SandboxResult(
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

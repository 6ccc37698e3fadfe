"""Real runs through bubblewrap: each test runs a small hostile program and checks it was contained."""

from __future__ import annotations

import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pada import sandbox
from pada.errors import PadaError
from pada.sandbox import SandboxUnavailable, run_python, sandbox_available

needs_bwrap = pytest.mark.skipif(not sandbox_available(), reason="bubblewrap sandbox not usable here")


@pytest.fixture(params=["default", "user-namespace"])
def mode(request, monkeypatch):
    """Run a test both ways bwrap is driven: as root with a per-run uid (the default here), and
    inside a user namespace as the caller's uid (what a non-root user gets)."""
    if request.param == "user-namespace":
        monkeypatch.setattr(sandbox, "_sandbox_uid", lambda: None)
    return request.param


@needs_bwrap
def test_passing_program_runs_sandboxed(mode):
    result = run_python("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('ok')\n")
    assert result.passed and result.returncode == 0 and not result.timed_out
    assert result.sandboxed
    assert result.stdout == "ok\n" and result.stderr == ""


@needs_bwrap
def test_failing_assert_fails_with_traceback(mode):
    result = run_python("assert sorted([3, 1]) == [3, 1], 'not sorted'\n")
    assert not result.passed
    assert result.returncode == 1 and not result.timed_out
    assert "AssertionError: not sorted" in result.stderr


@needs_bwrap
def test_infinite_loop_is_killed_at_the_timeout():
    started = time.monotonic()
    result = run_python("while True:\n    pass\n", timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert result.timed_out and not result.passed
    assert result.returncode is None
    assert elapsed < 10  # killed near the 1 s deadline, not left to run


@needs_bwrap
def test_cannot_write_outside_the_work_dir(tmp_path, mode):
    name = f"pada-sandbox-probe-{uuid.uuid4().hex}"
    repo = Path(sandbox.__file__).resolve().parents[1]
    targets = [repo / name, Path.home() / name, Path("/etc") / name, Path(sandbox.__file__).parent / name]
    program = f"""
import pathlib
for target in {[str(t) for t in targets]!r}:
    try:
        pathlib.Path(target).write_text("escaped")
        print("WROTE", target)
    except OSError as error:
        print("refused", target, type(error).__name__)
pathlib.Path("inside.txt").write_text("fine")
print("cwd write ok", pathlib.Path("inside.txt").read_text())
"""
    result = run_python(program)
    assert result.passed, result.stderr
    # A checkout under /tmp is shadowed by the sandbox's private /tmp: a write there succeeds inside and
    # lands in throw-away memory. Anywhere else the write must be refused; nowhere may it reach the host.
    escaped = [t for t in targets if f"WROTE {t}" in result.stdout and not str(t).startswith("/tmp/")]
    assert not escaped, result.stdout
    assert "cwd write ok fine" in result.stdout
    for target in targets:
        assert not target.exists()


@needs_bwrap
def test_system_is_readable_but_tmp_is_private(mode):
    name = f"pada-sandbox-probe-{uuid.uuid4().hex}"
    program = f"""
import os, pathlib, sys
assert pathlib.Path("/usr/lib/os-release").exists() or pathlib.Path("/etc/os-release").exists()
import json, collections  # the stdlib is readable
pathlib.Path("/tmp/{name}").write_text("private")
print(pathlib.Path("/tmp/{name}").read_text())
print("repo visible:", os.path.exists({str(Path(sandbox.__file__).parent)!r}))
"""
    result = run_python(program)
    assert result.passed, result.stderr
    assert "private" in result.stdout
    assert "repo visible: False" in result.stdout  # only the interpreter and system dirs are mounted
    assert not (Path("/tmp") / name).exists()


@needs_bwrap
def test_no_network(mode):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    program = f"""
import socket
print("interfaces", sorted(name for _, name in socket.if_nameindex()))
for address in [("127.0.0.1", {port}), ("1.1.1.1", 53)]:
    try:
        socket.create_connection(address, timeout=2).close()
        print("CONNECTED", address)
    except OSError as error:
        print("blocked", address, type(error).__name__)
"""
    try:
        result = run_python(program)
    finally:
        listener.close()
    assert result.passed, result.stderr
    assert "interfaces ['lo']" in result.stdout
    assert "CONNECTED" not in result.stdout
    assert result.stdout.count("blocked") == 2


@needs_bwrap
def test_memory_bomb_is_stopped(mode):
    program = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))\n"
    result = run_python(program, timeout_s=20.0, memory_mb=256)
    assert not result.passed and not result.timed_out
    assert "MemoryError" in result.stderr


def _processes_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                pass
    return pids


@needs_bwrap
@pytest.mark.skipif(sandbox._sandbox_uid() is None, reason="process cap needs root (per-run uid)")
def test_fork_bomb_is_contained_and_cleaned_up():
    program = """
import os, time
print("uid", os.getuid(), flush=True)
forked = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        forked += 1
except OSError as error:
    print("fork refused after", forked, type(error).__name__, flush=True)
time.sleep(600)
"""
    result = run_python(program, timeout_s=3.0)
    assert result.timed_out and not result.passed
    uid = int(result.stdout.split()[1])
    assert uid != os.getuid()
    assert "fork refused after" in result.stdout
    assert int(result.stdout.split("fork refused after")[1].split()[0]) <= sandbox.PROCESS_LIMIT
    deadline = time.monotonic() + 5
    while _processes_of_uid(uid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_of_uid(uid) == []  # the PID namespace took every child with it


@needs_bwrap
def test_parent_secrets_are_not_visible(monkeypatch, mode):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    result = run_python("import os\nprint(sorted(os.environ.items()))\n")
    assert result.passed, result.stderr
    assert "sk-test-secret" not in result.stdout
    assert "OPENAI_API_KEY" not in result.stdout and "HTTPS_PROXY" not in result.stdout


@needs_bwrap
def test_huge_output_is_truncated():
    result = run_python("import sys\nsys.stdout.write('x' * 5_000_000)\n")
    assert result.passed
    assert len(result.stdout) < sandbox.OUTPUT_LIMIT_BYTES + 100
    assert result.stdout.endswith("[... output truncated]")


@needs_bwrap
def test_disk_writes_are_capped(mode):
    program = """
import errno, os
written = 0
try:
    for index in range(100):
        with open(f"chunk{index}.bin", "wb") as handle:
            handle.write(b"x" * (10 * 1024 * 1024))
        written += 10
except OSError as error:
    print("stopped after", written, "MB:", errno.errorcode[error.errno])
"""
    result = run_python(program, timeout_s=20.0)
    assert result.passed, result.stderr
    assert "stopped after" in result.stdout
    assert int(result.stdout.split()[2]) <= sandbox.FILE_SIZE_LIMIT_BYTES // (1024 * 1024)


@needs_bwrap
def test_limits_hold_without_prlimit(monkeypatch):
    monkeypatch.setattr(sandbox, "_find_prlimit", lambda: None)  # falls back to a preexec_fn
    result = run_python("chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))\n", memory_mb=256)
    assert not result.passed and "MemoryError" in result.stderr
    assert run_python("print('ok')").stdout == "ok\n"


@needs_bwrap
def test_concurrent_runs_do_not_interfere():
    programs = [f"import time\ntime.sleep(0.2)\nprint({index} * 2)\n" for index in range(6)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(run_python, programs))
    assert [result.stdout for result in results] == [f"{index * 2}\n" for index in range(6)]
    assert all(result.passed for result in results)


def test_missing_bwrap_raises_unless_opted_out(monkeypatch):
    monkeypatch.setattr(sandbox, "_find_bwrap", lambda: None)
    monkeypatch.delenv("PADA_ALLOW_UNSANDBOXED", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    with pytest.raises(SandboxUnavailable) as caught:
        run_python("print('hi')")
    assert isinstance(caught.value, PadaError)
    assert "apt-get install bubblewrap" in str(caught.value)
    assert "PADA_ALLOW_UNSANDBOXED=1" in str(caught.value)
    assert not sandbox_available()

    result = run_python("import os\nprint('hi', 'OPENAI_API_KEY' in os.environ)\n", allow_unsandboxed=True)
    assert result.passed and not result.sandboxed
    assert result.stdout == "hi False\n"

    monkeypatch.setenv("PADA_ALLOW_UNSANDBOXED", "1")
    looping = run_python("while True:\n    pass\n", timeout_s=1.0)
    assert looping.timed_out and not looping.sandboxed


def test_unsandboxed_background_child_does_not_hold_up_the_result(monkeypatch):
    monkeypatch.setattr(sandbox, "_find_bwrap", lambda: None)
    program = "import subprocess\nsubprocess.Popen(['sleep', '30'])\nprint('done')\n"
    started = time.monotonic()
    result = run_python(program, timeout_s=10.0, allow_unsandboxed=True)
    assert result.passed and not result.timed_out, result
    assert result.stdout == "done\n"
    assert time.monotonic() - started < 10  # returned when the program exited, not at the timeout


def test_broken_bwrap_raises_with_its_error(monkeypatch, tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox, "_find_bwrap", lambda: str(fake))
    monkeypatch.setenv("PADA_ALLOW_UNSANDBOXED", "1")  # present-but-broken bwrap never falls back
    with pytest.raises(SandboxUnavailable, match="No permissions to creating new namespace"):
        run_python("print('hi')")
    assert not sandbox_available()


@needs_bwrap
@pytest.mark.skipif(sandbox._cgroup_layout() is None, reason="no writable cgroup here: per-process caps only")
def test_memory_cap_holds_for_all_processes_together(mode):
    """4 children of 180 MB each fit a 256 MB RLIMIT_AS one by one, but not the sandbox's cgroup."""
    program = """
import os, time
pids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        block = bytearray(180 * 1024 * 1024)
        for index in range(0, len(block), 4096):
            block[index] = 1
        time.sleep(1)
        os._exit(0)
    pids.append(pid)
print("held", sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 for pid in pids))
"""
    result = run_python(program, timeout_s=20.0, memory_mb=256)
    assert result.passed, result.stderr
    assert int(result.stdout.split()[1]) <= 1
    assert result.peak_memory_bytes <= 256 * 1024 * 1024

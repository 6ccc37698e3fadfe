"""Local LLMs on llama.cpp: `local/<alias or path.gguf>` is served by a `llama-server` process.

    from pada.llm.engine import ensure_server
    server = ensure_server(gguf_path)          # started on 127.0.0.1, or an already running one reused
    server.api_base, server.model_name         # -> litellm "openai/<model_name>" with api_base
    server.stop()

The LLM client reaches the server exactly as it reaches any OpenAI-compatible `api_base`
server (`openai/<name>`); structured output is llama-server's own: a `response_format`
json_schema becomes a grammar. `-np` parallel slots batch concurrent requests in the engine.

The binary: `scripts/install.sh` builds llama.cpp's server once from the `vendor/llama.cpp`
of the llama-cpp-python sdist (`ENGINE_VERSION`) into `<cache>/llama.cpp-<version>/bin/`
(`pada.paths.cache_dir()`, i.e. $PADA_CACHE_DIR or ~/.cache/pada); $PADA_LLAMA_SERVER names
another binary.

Lifetime. Each server runs under a small watchdog process (`python -m pada.llm.engine watch`)
in its own session, and every process using the server holds a shared `flock` on the
server's lease file. The kernel drops a process's lock when it exits, however it exits
(SIGKILL included), so the watchdog stops the server once no process holds the lease; and
the server gets SIGKILL if the watchdog itself dies (PR_SET_PDEATHSIG, set by the watchdog's
only thread, so no thread exit can trigger it). No server outlives the processes using it.

Reuse. One server per (model file, parallel, ctx_per_slot, threads): within a process the
same object is returned; across processes a registry file beside the lease (pid, process
start time, port) is trusted only when the pid is still the same process (its start time in
/proc), its command line has that port and model, and /health answers 200.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pada.errors import PadaError

if TYPE_CHECKING:
    from pada.llm.client import LLMConfig

ENGINE_VERSION = "0.3.36"  # llama-cpp-python sdist whose vendor/llama.cpp is built (scripts/install.sh)
PROVIDER = "local"
# Agent prompts run to ~1.5k tokens and replies to ~600 (plus a schema re-ask turn), and llama-server
# splits -c evenly over its -np slots: 4096 tokens per slot holds the longest request with room to spare.
DEFAULT_CTX_PER_SLOT = 4096
DEFAULT_PARALLEL = 4  # = the offline configs' `concurrency: 4`: every in-flight request gets a slot
START_TIMEOUT_S = 180.0  # loading a 1.1 GB GGUF from a cold disk on a busy 2-core machine
_WATCHDOG_POLL_S = 0.25


class EngineError(PadaError):
    """llama-server is missing, does not start, or a `local/` model names no GGUF."""


# ---------------------------------------------------------------- the binary

def engine_dir() -> Path:
    from pada.paths import cache_dir

    return cache_dir() / f"llama.cpp-{ENGINE_VERSION}"


def server_binary() -> Path:
    """The llama-server to run: $PADA_LLAMA_SERVER, else the one scripts/install.sh built into the cache."""
    override = os.environ.get("PADA_LLAMA_SERVER")
    path = Path(override).expanduser() if override else engine_dir() / "bin" / "llama-server"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise EngineError(f"llama-server not found at {path}: local/ models need it. Build it with "
                          "`bash scripts/install.sh` (once, ~7 CPU-minutes) or set PADA_LLAMA_SERVER")
    return path


def _server_env(binary: Path) -> dict[str, str]:
    """The build's shared libraries (libllama.so, libggml*.so) live beside the binary."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(binary.parent), env.get("LD_LIBRARY_PATH")]))
    return env


# ---------------------------------------------------------------- local/ model strings

def local_gguf(model: str) -> Path:
    """`local/<alias>` or `local/<path to a .gguf>` (the `local/` prefix optional) -> the GGUF file."""
    from pada import bundled

    name = model.split("/", 1)[1] if model.startswith(f"{PROVIDER}/") else model
    found = bundled.bundled_gguf(name)
    if found is not None:
        return found
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        return path.resolve()
    raise EngineError(f"{model!r}: local/ takes a bundled model ({bundled.QWEN_CODER_1_5B}, {bundled.QWEN_CODER}) "
                      f"or the path of a .gguf file" + (f"; {path} does not exist" if path.suffix else ""))


def is_local(model: str) -> bool:
    return model.startswith(f"{PROVIDER}/")


def server_for(config: LLMConfig, log_dir: Path | None = None) -> LlamaServer:
    """The server for a `local/...` LLMConfig: one slot per request the client keeps in flight."""
    return ensure_server(local_gguf(config.model), parallel=config.concurrency, log_dir=log_dir)


def resolve_local(config: LLMConfig, log_dir: Path | None = None) -> LLMConfig:
    """A `local/...` config as the plain OpenAI-compatible config that reaches its (started) server.

    For callers that want litellm settings (benchmarks). The LLM client does not need it: it keeps
    the user's `local/...` string (so records and the reply cache, whose key must not change with the
    server's port, show what was configured) and routes each request to the server itself.
    Non-local configs are returned unchanged."""
    if not is_local(config.model):
        return config
    server = server_for(config, log_dir)
    return replace(config, model=f"openai/{server.model_name}", api_base=server.api_base)


# ---------------------------------------------------------------- servers

@dataclass
class LlamaServer:
    """A running llama-server this process holds a lease on."""

    gguf: Path
    port: int
    pid: int
    start_ticks: int
    watchdog_pid: int
    watchdog_ticks: int | None
    model_name: str
    log_path: Path | None
    key: str
    started_here: bool  # False: another process started it and this one reuses it
    _lease: Any = field(default=None, repr=False)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def alive(self) -> bool:
        """The process is still the one started (same pid and start time) and has not been stopped here."""
        return self._lease is not None and _start_ticks(self.pid) == self.start_ticks

    def healthy(self, timeout_s: float = 2.0) -> bool:
        return self.alive() and _health(self.port, timeout_s) == 200

    def stop(self, timeout_s: float = 10.0) -> None:
        """Give up this process's lease; the server stops (now) if no other process holds one."""
        with _LOCK:
            if _LIVE.get(self.key) is self:
                del _LIVE[self.key]
            lease, self._lease = self._lease, None
        if lease is None:
            return
        lease.close()  # drops this process's shared lock
        paths = _paths(self.key)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and _start_ticks(self.pid) == self.start_ticks:
            with open(paths["lease"], "a+") as probe:
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another user, or the watchdog stopping it right now
                    time.sleep(0.05)
                    continue
                # Nobody else uses it: stop it while holding the lease, so no one can pick it up meanwhile.
                _signal_if_same(self.watchdog_pid, self.watchdog_ticks, signal.SIGTERM)
                _wait_gone(self.pid, self.start_ticks, timeout_s)
                _signal_if_same(self.pid, self.start_ticks, signal.SIGKILL)
                with contextlib.suppress(FileNotFoundError):
                    paths["registry"].unlink()
                return
        # still running after a second of failed probes: another process is using it


_LIVE: dict[str, LlamaServer] = {}
_LOCK = threading.RLock()


def ensure_server(gguf: Path, *, parallel: int = DEFAULT_PARALLEL, ctx_per_slot: int = DEFAULT_CTX_PER_SLOT,
                  threads: int | None = None, log_dir: Path | None = None) -> LlamaServer:
    """A healthy llama-server for `gguf` with these settings: this process's, another process's, or a new one.

    `threads` defaults to $PADA_LLAMA_THREADS, else the CPUs this process may use. A new server's log is `log_dir/llama-server-<name>.log`
    (`log_dir` None: the engine's cache directory). Raises EngineError with the log's tail if it does not start."""
    gguf = Path(gguf).expanduser().resolve()
    if not gguf.is_file():
        raise EngineError(f"GGUF file {gguf} does not exist")
    if parallel < 1 or ctx_per_slot < 256:
        raise EngineError(f"parallel must be >= 1 and ctx_per_slot >= 256, got {parallel} and {ctx_per_slot}")
    # On a shared, busy CPU fewer threads can be faster (ggml's threads wait on each other by spinning; measured
    # here at load 5 on 2 cores: -t 1 10 tok/s, -t 2 0.9 tok/s): PADA_LLAMA_THREADS sets the default.
    threads = threads or int(os.environ.get("PADA_LLAMA_THREADS") or len(os.sched_getaffinity(0)))
    binary = server_binary()
    settings = json.dumps([str(gguf), parallel, ctx_per_slot, threads, str(binary)])
    key = hashlib.sha256(settings.encode()).hexdigest()[:16]
    with _LOCK:
        server = _LIVE.get(key)
        if server is not None and server.alive():
            return server
        if server is not None:  # died (killed from outside): forget it and start again
            server.stop()
        paths = _paths(key)
        from pada.bundled import _file_lock

        with _file_lock(paths["start"]):  # one starter per key across processes
            lease = open(paths["lease"], "a+")
            fcntl.flock(lease, fcntl.LOCK_SH)  # before checking: a server found healthy now stays up for us
            try:
                server = _reuse(key, gguf, lease, paths) or _start(key, gguf, binary, parallel, ctx_per_slot,
                                                                   threads, log_dir, lease, paths)
            except BaseException:
                lease.close()
                raise
        _LIVE[key] = server
        return server


def stop_all() -> None:
    """Give up every server this process holds (also run at exit)."""
    with _LOCK:
        servers = list(_LIVE.values())
    for server in servers:
        server.stop()


atexit.register(stop_all)


def _reuse(key: str, gguf: Path, lease: Any, paths: dict[str, Path]) -> LlamaServer | None:
    try:
        info = json.loads(paths["registry"].read_text())
    except (OSError, ValueError):
        return None
    pid, ticks, port = int(info.get("pid", 0)), int(info.get("start_ticks", -1)), int(info.get("port", 0))
    if _start_ticks(pid) != ticks or not _cmdline_has(pid, ["--port", str(port)], str(gguf)):
        return None
    if _health(port, 5.0) != 200:
        return None
    log_path = Path(info["log"]) if info.get("log") else None
    return LlamaServer(gguf=gguf, port=port, pid=pid, start_ticks=ticks, watchdog_pid=int(info["watchdog_pid"]),
                       watchdog_ticks=info.get("watchdog_ticks"), model_name=info["model_name"], log_path=log_path,
                       key=key, started_here=False, _lease=lease)


def _start(key: str, gguf: Path, binary: Path, parallel: int, ctx_per_slot: int, threads: int,
           log_dir: Path | None, lease: Any, paths: dict[str, Path]) -> LlamaServer:
    name = _model_name(gguf)
    log_dir = Path(log_dir) if log_dir is not None else paths["registry"].parent
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"llama-server-{name}.log"
    for _attempt in range(3):  # a free port can be taken between choosing it and the server binding it
        port = _free_port()
        args = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "--alias", name,
                "-np", str(parallel), "-c", str(parallel * ctx_per_slot), "-t", str(threads), "--no-webui",
                # the prompt cache in RAM defaults to 8 GiB; prefix reuse within a slot needs none of it
                "--cache-ram", "256"]
        print(f"pada: starting llama-server for {name} on 127.0.0.1:{port} (log: {log_path})", file=sys.stderr)
        with open(log_path, "ab") as log:  # the watchdog's own errors, if any, go to the server's log
            watchdog = subprocess.Popen(
                [sys.executable, "-m", "pada.llm.engine", "watch", str(paths["lease"]), str(log_path), "--", *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=_watchdog_env(binary),
                start_new_session=True)  # its own session: a Ctrl-C to the run's terminal does not reach it directly
        first = watchdog.stdout.readline().decode().strip()  # the server's pid, once it is spawned
        watchdog.stdout.close()
        if not first.isdigit():
            watchdog.wait(10)
            raise EngineError(f"llama-server did not start: {_tail(log_path)}")
        pid = int(first)
        ticks = _start_ticks(pid)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if watchdog.poll() is not None or _start_ticks(pid) != ticks:
                break  # it exited: a port clash (retry) or a real failure (raised below)
            if _health(port, 2.0) == 200:
                info = {"pid": pid, "start_ticks": ticks, "port": port, "watchdog_pid": watchdog.pid,
                        "watchdog_ticks": _start_ticks(watchdog.pid),
                        "model_name": name, "gguf": str(gguf), "log": str(log_path), "args": args}
                tmp = paths["registry"].with_suffix(".tmp")
                tmp.write_text(json.dumps(info))
                os.replace(tmp, paths["registry"])
                return LlamaServer(gguf=gguf, port=port, pid=pid, start_ticks=ticks, watchdog_pid=watchdog.pid,
                                   watchdog_ticks=info["watchdog_ticks"], model_name=name, log_path=log_path,
                                   key=key, started_here=True, _lease=lease)
            time.sleep(0.2)
        else:
            watchdog.terminate()
            watchdog.wait(15)
            raise EngineError(f"llama-server for {name} did not become healthy in {START_TIMEOUT_S:.0f}s: "
                              f"{_tail(log_path)}")
        watchdog.wait(15)
        if "bind" not in _tail(log_path).lower():
            break
    raise EngineError(f"llama-server for {name} exited while starting: {_tail(log_path)}")


def _model_name(gguf: Path) -> str:
    from pada import bundled

    for alias in (bundled.QWEN_CODER, bundled.QWEN_CODER_1_5B):
        with contextlib.suppress(bundled.BundledModelError):
            if bundled.bundled_gguf(alias) == gguf:
                return alias
    return gguf.stem


def _watchdog_env(binary: Path) -> dict[str, str]:
    env = _server_env(binary)
    root = str(Path(__file__).resolve().parents[2])  # so `-m pada.llm.engine` imports this checkout
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _paths(key: str) -> dict[str, Path]:
    from pada.paths import cache_dir

    root = cache_dir() / "llama-servers"  # beside the build, not in it: a rebuild replaces that folder
    root.mkdir(parents=True, exist_ok=True)
    return {name: root / f"{key}.{name}" for name in ("start", "lease", "registry")}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health(port: int, timeout_s: float) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as err:  # 503 while the model loads
        return err.code
    except (OSError, ValueError):
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22): with the pid, its identity."""
    if pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # exited, waiting to be reaped
        return None
    return int(fields[19])


def _cmdline_has(pid: int, pair: list[str], text: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return text in argv and any(argv[i:i + 2] == pair for i in range(len(argv) - 1))


def _signal_if_same(pid: int, ticks: int | None, sig: int) -> None:
    if pid > 0 and ticks is not None and _start_ticks(pid) == ticks:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pid: int, ticks: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _start_ticks(pid) == ticks:
        time.sleep(0.05)


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no log at {path})"
    return " | ".join(text[-lines:]) or f"(empty log at {path})"


# ---------------------------------------------------------------- the watchdog process

def _set_pdeathsig() -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _watch(lease_path: str, log_path: str, args: list[str]) -> int:
    """Run the server; stop it once no process holds a shared lock on the lease (or on SIGTERM)."""
    with open(log_path, "ab") as log:
        server = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  preexec_fn=_set_pdeathsig)
    print(server.pid, flush=True)
    sys.stdout.close()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(lease_path, "a+") as lease:
        while server.poll() is None and not stopping.is_set():
            try:
                fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # someone still uses the server
                stopping.wait(_WATCHDOG_POLL_S)
                continue
            break  # no user left (we now hold the lease exclusively until we exit)
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return server.returncode or 0


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[1] == "watch" and sys.argv[4] == "--":
        sys.exit(_watch(sys.argv[2], sys.argv[3], sys.argv[5:]))
    sys.exit("usage: python -m pada.llm.engine watch LEASE LOG -- llama-server ARGS...")

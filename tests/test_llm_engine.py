"""pada.llm.engine: local/ models on llama-server, with the bundled Qwen2.5-Coder-0.5B GGUF.

Needs the llama-server that `bash scripts/install.sh` builds: without it these tests FAIL (saying so),
they do not skip. LLM calls on a CPU cost seconds, so replies are kept short.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from pada import bundled
from pada.llm import JSONRequest, LLMClient, LLMConfig, engine

REPO = Path(__file__).resolve().parents[1]


class Verdict(BaseModel):
    answer: Literal["A", "B", "C", "D"]
    reason: str


@pytest.fixture(scope="module")
def gguf():
    try:
        engine.server_binary()
    except engine.EngineError as err:
        pytest.fail(f"{err} (the install builds it: bash scripts/install.sh)")
    return bundled.qwen_coder_gguf()


@pytest.fixture(scope="module")
def server(gguf, tmp_path_factory):
    """The 0.5B with the client's settings for `concurrency: 4` (so an LLMClient finds this very server)."""
    server = engine.ensure_server(gguf, parallel=4, log_dir=tmp_path_factory.mktemp("engine-log"))
    yield server
    server.stop()


def _gone(pid: int, ticks: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if engine._start_ticks(pid) != ticks:
            return True
        time.sleep(0.1)
    return False


def _helper(code: str) -> subprocess.Popen:
    """A second Python process using the engine (the test's PADA_CACHE_DIR and PATH carry over)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)


def test_server_starts_healthy_with_its_log(server):
    assert server.healthy()
    assert server.model_name == bundled.QWEN_CODER
    assert server.api_base.startswith("http://127.0.0.1:") and server.api_base.endswith("/v1")
    assert server.log_path.name == "llama-server-qwen2.5-coder-0.5b.log" and server.log_path.stat().st_size > 0
    argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    assert b"-np" in argv and argv[argv.index(b"-np") + 1] == b"4"
    assert argv[argv.index(b"-c") + 1] == b"16384"  # 4 slots x 4096 tokens


def test_server_is_reused_in_process_and_across_processes(server, gguf):
    assert engine.ensure_server(gguf, parallel=4) is server
    assert engine.server_for(LLMConfig(model=f"local/{gguf}", concurrency=4)) is server
    other = _helper(f"""
        from pathlib import Path
        from pada.llm import engine
        s = engine.ensure_server(Path({str(gguf)!r}), parallel=4)
        print(s.pid, s.port, s.started_here)
    """)
    out, _ = other.communicate(timeout=120)
    assert out.split() == [str(server.pid), str(server.port), "False"]
    assert server.healthy()  # the other process ending gives up its lease only, not the server


def test_the_server_enforces_a_json_schema(server):
    """The grammar is llama-server's: a prompt that never mentions JSON still gets a schema-valid object."""
    body = {"model": server.model_name, "max_tokens": 40, "temperature": 0,
            "messages": [{"role": "user", "content": "Name a colour."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "N", "schema": {
                "type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}}}}
    request = urllib.request.Request(f"{server.api_base}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        reply = json.loads(response.read())["choices"][0]["message"]["content"]
    assert isinstance(json.loads(reply)["count"], int)


def test_a_gguf_path_through_the_client_gives_four_valid_concurrent_replies(server, gguf, tmp_path):
    client = LLMClient(LLMConfig(model=f"local/{gguf}", concurrency=4, max_tokens=48, cache_dir=tmp_path))
    questions = ["2+2?", "Capital of France?", "Largest planet?", "H2O is?"]
    requests = [JSONRequest([{"role": "user", "content": f"{q} Options: A) one B) two C) three D) four. "
                                                          "Pick a letter, reason in five words."}],
                            Verdict, stage="qc") for q in questions]
    results = client.complete_json_many(requests)
    assert [r.ok for r in results] == [True] * 4, [r.error for r in results]
    assert all(r.call.model == f"local/{gguf}" for r in results)  # records keep the configured string
    assert all(r.call.completion_tokens > 0 for r in results)
    again = client.complete_json(requests[0].messages, Verdict, stage="qc")  # the cache key has no port in it
    assert again.call.cache_hit and again.value == results[0].value


def test_resolve_local_gives_a_plain_openai_config(server):
    config = engine.resolve_local(LLMConfig(model="local/qwen2.5-coder-0.5b", concurrency=4))
    assert (config.model, config.api_base) == ("openai/qwen2.5-coder-0.5b", server.api_base)
    remote = LLMConfig(model="openai/gpt-4o-mini")
    assert engine.resolve_local(remote) is remote


def test_stop_leaves_no_process(gguf, tmp_path):
    server = engine.ensure_server(gguf, parallel=1, ctx_per_slot=512, log_dir=tmp_path)
    assert server.started_here and server.healthy()
    server.stop()
    assert _gone(server.pid, server.start_ticks, 10) and _gone(server.watchdog_pid, server.watchdog_ticks, 10)
    assert not server.alive()
    assert (tmp_path / "llama-server-qwen2.5-coder-0.5b.log").is_file()


def test_a_killed_parent_leaves_no_orphan(gguf):
    parent = _helper(f"""
        import sys, time
        from pathlib import Path
        from pada.llm import engine
        s = engine.ensure_server(Path({str(gguf)!r}), parallel=1, ctx_per_slot=768)
        print(s.pid, s.start_ticks, flush=True)
        time.sleep(600)
    """)
    pid, ticks = map(int, parent.stdout.readline().split())
    assert engine._start_ticks(pid) == ticks
    parent.send_signal(signal.SIGKILL)  # no atexit, no finally: only the kernel dropping its lease
    parent.wait()
    assert _gone(pid, ticks, 15)


def test_local_model_names(gguf, tmp_path):
    assert engine.local_gguf("local/qwen2.5-coder-0.5b") == gguf
    assert engine.local_gguf(f"local/{gguf}") == gguf.resolve()
    with pytest.raises(engine.EngineError, match="bundled model"):
        engine.local_gguf("local/no-such-model")
    with pytest.raises(engine.EngineError, match="does not exist"):
        engine.local_gguf(f"local/{tmp_path / 'missing.gguf'}")


def test_a_missing_binary_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PADA_LLAMA_SERVER", str(tmp_path / "llama-server"))
    with pytest.raises(engine.EngineError, match="scripts/install.sh"):
        engine.server_binary()


def test_a_run_with_a_local_model_starts_and_stops_its_server(tiny_slm_dir, gguf, tmp_path, monkeypatch):
    from conftest import tiny_run_config
    from pada.config import from_dict
    from pada.pipeline import Pipeline, start_run

    started = []
    real = engine.ensure_server

    def spy(*args, **kwargs):
        server = real(*args, **kwargs)
        started.append(server)
        return server

    monkeypatch.setattr(engine, "ensure_server", spy)
    local = {"model": "local/qwen2.5-coder-0.5b", "concurrency": 2, "max_tokens": 16}  # its own server
    config = from_dict(tiny_run_config(tiny_slm_dir, iterations=1, analyse_last_iteration=False,
                                       llm=local, judge=local))
    store = start_run(config, runs_root=tmp_path)
    assert Pipeline(store).run() == "completed"
    assert started and all(s is started[0] for s in started)  # llm and judge share one server
    server = started[0]
    assert server.log_path == store.path / "llama-server-qwen2.5-coder-0.5b.log"
    assert _gone(server.pid, server.start_ticks, 10)
    preflight = store.llm_calls(stage="preflight")
    assert len(preflight) == 2 and all(c.ok and c.model == "local/qwen2.5-coder-0.5b" for c in preflight)

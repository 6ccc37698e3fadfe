"""The api_base path end to end: `openai/<model>` + api_base against an OpenAI-compatible stub on 127.0.0.1.

Proves what a vLLM / Ollama user relies on: the request reaches `<api_base>/chat/completions`
with response_format, the key comes from OPENAI_API_KEY, HTTP 429s are retried with
Retry-After, a 400 about response_format falls back to prompt-only, and the key never
lands in the cache or the records.
"""

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import BaseModel

from pada.llm import LLMClient, LLMConfig
from pada.llm import client as client_module

SECRET = "sk-test-NEVER-WRITE-ME-987654321"


class Verdict(BaseModel):
    label: str
    score: int


class StubServer:
    """OpenAI-compatible chat endpoint. `answer(body)` → (status, headers, json payload)."""

    def __init__(self, answer: Callable[[dict], tuple[int, dict, dict]]):
        self.answer = answer
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers, payload = stub.answer(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def chat_reply(body: dict, content: str) -> tuple[int, dict, dict]:
    return 200, {}, {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    }  # fmt: skip


def error_reply(status: int, message: str, headers: dict | None = None) -> tuple[int, dict, dict]:
    return status, headers or {}, {"error": {"message": message, "type": "invalid_request_error", "code": status}}


@pytest.fixture(autouse=True)
def offline_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(client_module, "_sleep", lambda seconds: None)


def test_api_base_round_trip_sends_response_format_and_keeps_key_out_of_files(tmp_path):
    with StubServer(lambda body: chat_reply(body, '```json\n{"label": "good", "score": 8}\n```')) as stub:
        config = LLMConfig(model="openai/stub-model", api_base=stub.api_base, cache_dir=tmp_path, max_tokens=64)
        client = LLMClient(config)
        result = client.complete_json([{"role": "user", "content": "Rate it."}], Verdict, stage="quality")
        cached = LLMClient(config).complete_json([{"role": "user", "content": "Rate it."}], Verdict, stage="quality")

    assert result.ok and result.value == Verdict(label="good", score=8)
    assert len(stub.requests) == 1 and cached.call.cache_hit
    request = stub.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "stub-model"
    assert request["body"]["max_tokens"] == 64
    assert request["body"]["response_format"]["type"] == "json_schema"
    assert request["body"]["response_format"]["json_schema"]["name"] == "Verdict"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"  # taken from the environment
    assert (result.call.prompt_tokens, result.call.completion_tokens) == (11, 5)
    assert result.call.cost_usd == 0.0  # a self-hosted model has no price

    written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    records = json.dumps([c.model_dump() for c in client.calls])
    assert written and SECRET not in written and SECRET not in records


def test_http_429_with_retry_after_is_retried():
    statuses = iter([429, 429, 200])

    def answer(body):
        status = next(statuses)
        if status == 429:
            return error_reply(429, "slow down", {"Retry-After": "0"})
        return chat_reply(body, '{"label": "ok", "score": 1}')

    with StubServer(answer) as stub:
        client = LLMClient(LLMConfig(model="openai/stub-429", api_base=stub.api_base))
        result = client.complete_json([{"role": "user", "content": "x"}], Verdict, stage="quality")
    assert result.ok and result.call.attempts == 3
    assert len(stub.requests) == 3  # no hidden SDK-level retries on top of ours


def test_http_400_about_response_format_falls_back_to_prompt_only():
    def answer(body):
        if "response_format" in body:
            return error_reply(400, "response_format json_schema is not supported by this server")
        return chat_reply(body, '{"label": "ok", "score": 2}')

    with StubServer(answer) as stub:
        client = LLMClient(LLMConfig(model="openai/stub-no-schema", api_base=stub.api_base))
        result = client.complete_json([{"role": "user", "content": "x"}], Verdict, stage="quality")
    assert result.ok
    assert ["response_format" in r["body"] for r in stub.requests] == [True, False]
    assert '"score"' in stub.requests[1]["body"]["messages"][-1]["content"]  # the schema is still in the prompt


def test_http_401_is_not_retried_and_key_is_not_echoed():
    with StubServer(lambda body: error_reply(401, f"Incorrect API key provided: {SECRET}")) as stub:
        client = LLMClient(LLMConfig(model="openai/stub-auth", api_base=stub.api_base))
        result = client.complete_json([{"role": "user", "content": "x"}], Verdict, stage="quality")
    assert not result.ok and len(stub.requests) == 1
    assert result.error.startswith("AuthenticationError")
    assert SECRET not in result.error and SECRET not in (result.call.error or "")


def test_api_base_without_any_key_works_for_keyless_servers(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with StubServer(lambda body: chat_reply(body, "plain text")) as stub:
        client = LLMClient(LLMConfig(model="openai/stub-keyless", api_base=stub.api_base))
        result = client.complete_text([{"role": "user", "content": "x"}], stage="rephrase")
    assert result.ok and result.value == "plain text"


# -- local/ models: llama-server on this machine's CPU ---------------------------------------------


def test_a_local_model_waits_longer_before_a_timeout_than_a_remote_one():
    assert LLMClient(LLMConfig(model="local/slow-cpu"))._timeout_s() == client_module.LOCAL_TIMEOUT_S
    assert LLMClient(LLMConfig(model="openai/x"))._timeout_s() == client_module.REMOTE_TIMEOUT_S
    assert LLMClient(LLMConfig(model="local/slow-cpu", timeout_s=30))._timeout_s() == 30
    with pytest.raises(client_module.LLMConfigError, match="timeout_s"):
        LLMConfig(model="openai/x", timeout_s=0)

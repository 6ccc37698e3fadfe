"""The whole loop against an OpenAI-compatible server given by `api_base` (a vLLM / Ollama user's set-up).

The server is a stub on 127.0.0.1 that answers each agent's schema with the scripted stand-in's
canned replies, so everything between the pipeline and the HTTP wire is the real code.
"""

from __future__ import annotations

import json

from conftest import tiny_run_config
from test_llm_http import StubServer, chat_reply

from doubles.pada_script import pada_script
from pada.config import from_dict
from pada.pipeline import Pipeline, start_run

KEY = "sk-pipeline-test-SECRET-123"


def scripted_server_reply(body: dict):
    if "response_format" not in body:  # the pipeline's plain-text "does the model answer" call
        return chat_reply(body, "OK")
    schema = body["response_format"]["json_schema"]  # the client sends the agent's schema to such servers
    handler = pada_script()[schema["name"]]
    return chat_reply(body, handler(body["messages"], schema.get("schema")))


def test_pipeline_runs_against_an_openai_compatible_server(tmp_path, tiny_slm_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with StubServer(scripted_server_reply) as server:
        overrides = {"llm": {"model": "openai/stub-generator", "api_base": server.api_base, "concurrency": 4},
                     "judge": {"model": "openai/stub-judge", "api_base": server.api_base, "concurrency": 4}}
        config = from_dict(tiny_run_config(tiny_slm_dir, **overrides))
        store = start_run(config, runs_root=tmp_path, run_id="api-base")
        assert Pipeline(store, config).run() == "completed"
        assert server.requests and all(r["path"].endswith("/chat/completions") for r in server.requests)
        agent_requests = [r for r in server.requests if "single word OK" not in json.dumps(r["body"]["messages"])]
        assert agent_requests and len(agent_requests) == len(server.requests) - 2  # minus the llm/judge preflight
        assert all(r["body"].get("response_format", {}).get("type") == "json_schema" for r in agent_requests)
        assert {r["body"]["model"] for r in server.requests} == {"stub-generator", "stub-judge"}
        assert store.accepted_samples(1)
        usage = store.llm_usage(group_by=("model",))
        assert {u["model"] for u in usage} == {"openai/stub-generator", "openai/stub-judge"}
    # The key came from the environment and was written nowhere.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    store.close()

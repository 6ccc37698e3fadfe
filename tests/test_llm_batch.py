"""The provider batch path (`llm.batch: true`) against the stand-in batch endpoint (doubles/batch_standin.py).

What is proved here, over HTTP through litellm's openai provider: the uncached requests of one
`complete_json_many` call go up as one JSONL file and one batch, built by the client's own request code
(same body a direct call sends, custom_id = the cache key); the replies take the normal path (validation,
re-ask, cache, accounting); a request the batch did not answer is sent directly; the batch id is in the
run store before anything waits, so a "killed" run's successor polls the same batch instead of creating
a second one. Not proved: that OpenAI, Bedrock or vLLM accept these files (no real server here).
"""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from doubles.batch_standin import BatchStandIn
from pada.config import ConfigError, from_dict
from pada.llm import JSONRequest, LLMClient, LLMConfig, LLMConfigError
from pada.llm import client as client_module
from pada.llm.batch import BatchPending, request_set_hash
from pada.pipeline import Pipeline, start_run


class Verdict(BaseModel):
    label: str


def word(body: dict) -> str:
    """The first word of the request's first message: what each scripted request is about."""
    return body["messages"][0]["content"].split()[0]


def labelled(body: dict) -> str:
    return json.dumps({"label": word(body).upper()})


def judge_requests(n: int = 3) -> list[JSONRequest]:
    return [JSONRequest([{"role": "user", "content": f"w{i} judge this"}], Verdict, stage="quality")
            for i in range(n)]


def batch_config(server: BatchStandIn, tmp_path, **settings) -> LLMConfig:
    return LLMConfig(model="openai/standin-judge", api_base=server.api_base, batch=True, batch_poll_s=0.01,
                     batch_poll_max_s=0.02, cache_dir=tmp_path / "cache", backoff_base_s=0.001, **settings)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def run_store(tmp_path):
    """A run whose judge is the stand-in's model with batches on (the server address is filled in per test)."""
    def make(api_base: str, **judge):
        settings = {"model": "openai/standin-judge", "api_base": api_base, "batch": True,
                    "batch_poll_s": 0.01, "batch_poll_max_s": 0.02, **judge}
        config = from_dict({"task": "arc_challenge", "judge": settings})
        return start_run(config, runs_root=tmp_path / "runs", run_id="batch-run")
    return make


def test_uncached_requests_go_out_as_one_batch_and_land_in_the_cache(tmp_path):
    with BatchStandIn(labelled) as server:
        client = LLMClient(batch_config(server, tmp_path))
        results = client.complete_json_many(judge_requests())
        assert [r.value.label for r in results] == ["W0", "W1", "W2"]
        assert (server.batches_created, server.uploads, server.chat_calls) == (1, 1, 0)
        # Each line's body is what a direct call sends: the model without litellm's prefix, the schema
        # instruction in the prompt and response_format, the default sampling settings.
        body = server.bodies[0]
        assert body["model"] == "standin-judge" and body["temperature"] == 0.0 and body["max_tokens"] == 1024
        assert body["response_format"]["json_schema"]["name"] == "Verdict"
        assert "matches this JSON schema" in body["messages"][-1]["content"]
        assert not {"api_base", "api_key", "timeout", "num_retries", "metadata"} & body.keys()
        # Accounted like direct calls: one call per request, the batch's token usage.
        assert [(c.ok, c.attempts, c.prompt_tokens, c.completion_tokens) for c in client.calls] == [(True, 1, 7, 3)] * 3

        again = LLMClient(batch_config(server, tmp_path)).complete_json_many(judge_requests())
        assert [r.value.label for r in again] == ["W0", "W1", "W2"] and all(r.call.cache_hit for r in again)
        assert server.batches_created == 1  # everything was cached: no second batch


def test_only_uncached_requests_are_batched(tmp_path):
    with BatchStandIn(labelled) as server:
        LLMClient(batch_config(server, tmp_path)).complete_json_many(judge_requests(2))
        results = LLMClient(batch_config(server, tmp_path)).complete_json_many(judge_requests(3))
        assert [r.call.cache_hit for r in results] == [True, True, False]
        assert server.batches_created == 2
        second_input = server.files[server.batches["batch_5"]["input_file_id"]].decode().splitlines()
        assert [word(json.loads(line)["body"]) for line in second_input] == ["w2"]


def test_a_reply_the_batch_lacks_or_that_fails_validation_takes_the_normal_path(tmp_path):
    seen: dict[str, int] = {}

    def answer(body):
        w = word(body)
        seen[w] = seen.get(w, 0) + 1
        if seen[w] == 1 and w == "w1":
            return None  # this line of the batch output is an error
        if seen[w] == 1 and w == "w2":
            return "not json at all"
        return labelled(body)

    with BatchStandIn(answer) as server:
        client = LLMClient(batch_config(server, tmp_path, max_retries=0))
        results = client.complete_json_many(judge_requests())
        assert [r.value.label for r in results] == ["W0", "W1", "W2"]
        assert server.batches_created == 1 and server.chat_calls == 2
        direct = server.bodies[3:]
        w1 = next(body for body in direct if word(body) == "w1")
        assert w1 == server.bodies[1]  # the missing reply is asked again with exactly the batch line's body
        w2 = next(body for body in direct if body is not w1)
        # the invalid reply was re-asked the normal way: the model is shown its reply and the error
        assert [m["role"] for m in w2["messages"]] == ["user", "assistant", "user"]
        assert w2["messages"][1]["content"] == "not json at all" and "could not be used" in w2["messages"][2]["content"]
        assert sorted(c.attempts for c in client.calls) == [1, 1, 2]


def test_a_server_without_a_batch_api_gets_direct_calls(tmp_path):
    with BatchStandIn(labelled) as server:
        server.batch_api = False
        results = LLMClient(batch_config(server, tmp_path)).complete_json_many(judge_requests())
        assert [r.value.label for r in results] == ["W0", "W1", "W2"]
        assert server.batches_created == 0 and server.chat_calls == 3


def test_a_failed_batch_is_recorded_and_its_requests_sent_directly(run_store):
    with BatchStandIn(labelled) as server:
        server.fail_batches = True
        pipeline = Pipeline(run_store(server.api_base))
        pipeline.iteration = 1
        results = pipeline.llm("judge").complete_json_many(judge_requests())
        assert [r.value.label for r in results] == ["W0", "W1", "W2"]
        assert (server.batches_created, server.chat_calls) == (1, 3)
        content_hash = request_set_hash(_keys(pipeline, judge_requests()))
        assert pipeline.store.llm_batch(1, "quality", content_hash)["status"] == "failed"


def test_a_restarted_run_polls_the_recorded_batch_instead_of_paying_again(run_store, monkeypatch):
    monkeypatch.setattr(client_module, "_sleep", lambda s: None)
    with BatchStandIn(labelled) as server:
        server.hold = True  # the provider is still working on it
        store = run_store(server.api_base, batch_timeout_s=0.05)
        first = Pipeline(store)
        first.iteration = 1
        with pytest.raises(BatchPending, match="running again waits for it"):
            first.llm("judge").complete_json_many(judge_requests())  # the first run dies waiting
        content_hash = request_set_hash(_keys(first, judge_requests()))
        recorded = store.llm_batch(1, "quality", content_hash)
        assert recorded["batch_id"] == "batch_2" and recorded["status"] == "in_progress"
        assert recorded["round"] == 1 and recorded["n_requests"] == 3 and recorded["provider"] == "openai"
        assert server.batches_created == 1

        server.hold = False  # the provider finishes while nothing runs
        second = Pipeline(store)  # a new process on the same run
        second.iteration = 1
        results = second.llm("judge").complete_json_many(judge_requests())
        assert [r.value.label for r in results] == ["W0", "W1", "W2"]
        assert (server.batches_created, server.uploads, server.chat_calls) == (1, 1, 0)
        assert store.llm_batch(1, "quality", content_hash)["status"] == "completed"
        assert [u["calls"] for u in store.llm_usage(group_by=("stage",))] == [3]


def test_a_run_killed_while_reading_a_finished_batch_reads_it_again(run_store, tmp_path):
    with BatchStandIn(labelled) as server:
        store = run_store(server.api_base)
        first = Pipeline(store)
        first.iteration = 1
        first.llm("judge").complete_json_many(judge_requests())
        # Killed after one reply reached the cache: the others are lost with the process.
        entries = sorted(store.llm_cache_dir().rglob("*.json"))
        for entry in entries[1:]:
            entry.unlink()
        second = Pipeline(store)
        second.iteration = 1
        results = second.llm("judge").complete_json_many(judge_requests())
        assert all(r.ok for r in results) and sum(r.call.cache_hit for r in results) == 1
        assert (server.batches_created, server.chat_calls) == (1, 0)  # the same batch's output, read again


def test_store_rounds_count_a_stages_batches_per_iteration(run_store):
    store = run_store("http://127.0.0.1:9/v1")
    fields = {"provider": "openai", "input_file_id": "file-1", "n_requests": 2, "status": "validating"}
    assert store.record_llm_batch(1, "quality", "a" * 64, batch_id="b1", **fields) == 1
    assert store.record_llm_batch(1, "quality", "b" * 64, batch_id="b2", **fields) == 2
    assert store.record_llm_batch(2, "quality", "c" * 64, batch_id="b3", **fields) == 1
    assert store.record_llm_batch(1, "quality", "a" * 64, batch_id="b1", **fields) == 1  # the same set again
    store.set_llm_batch_status(1, "quality", "b" * 64, "completed")
    assert store.llm_batch(1, "quality", "b" * 64)["status"] == "completed"
    assert store.llm_batch(1, "generation_error", "b" * 64) is None


def test_status_lists_the_batches_a_run_waits_for(run_store, capsys):
    from pada.cli import main
    from pada.runs import overview

    store = run_store("http://127.0.0.1:9/v1")
    fields = {"provider": "openai", "input_file_id": "file-1", "n_requests": 3}
    store.record_llm_batch(1, "quality", "a" * 64, batch_id="batch_done", status="validating", **fields)
    store.record_llm_batch(1, "generation_pattern", "b" * 64, batch_id="batch_waiting", status="in_progress",
                           **fields)
    store.set_llm_batch_status(1, "quality", "a" * 64, "completed")
    [pending] = overview(store).batches_pending
    assert (pending["batch_id"], pending["stage"], pending["status"], pending["round"]) == (
        "batch_waiting", "generation_pattern", "in_progress", 1)
    store.close()
    assert main(["status", "batch-run", "--runs-root", str(store.path.parent)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("batch ")]
    assert lines == ["batch     it1 generation_pattern round 1: openai batch_waiting in_progress (3 requests, sent "
                     f"{pending['created_at']})"]


def test_batch_settings_are_checked():
    with pytest.raises(LLMConfigError, match="batch API"):
        LLMConfig(model="local/qwen2.5-coder-0.5b", batch=True)
    with pytest.raises(LLMConfigError, match="batch_poll_s must be positive"):
        LLMConfig(model="openai/gpt-4o-mini", batch=True, batch_poll_s=0)
    with pytest.raises(ConfigError, match="judge.batch"):
        from_dict({"judge": {"model": "openai/gpt-4o-mini", "batch": "yes"}})
    config = from_dict({"llm": {"model": "hosted_vllm/my-model", "batch": True, "batch_timeout_s": 3600}})
    assert config.llm.batch and config.llm.batch_timeout_s == 3600.0 and not config.judge.batch


def _keys(pipeline: Pipeline, requests: list[JSONRequest]) -> list[str]:
    """The cache keys the judge's client gives `requests` (what the batch's ledger key is made of)."""
    client = pipeline.llm("judge")
    return [client._request(request)[1] for request in requests]


def scripted_answer(body: dict) -> str:
    """The pipeline's agents' canned replies (doubles/pada_script.py), chosen by the schema the body names."""
    from doubles.pada_script import pada_script

    if "response_format" not in body:  # the pipeline's plain-text "does the model answer" call
        return "OK"
    schema = body["response_format"]["json_schema"]
    return pada_script()[schema["name"]](body["messages"], schema.get("schema"))


def test_a_pipeline_run_with_batches_survives_a_restart_and_pays_each_round_once(tmp_path, tiny_slm_dir,
                                                                                 monkeypatch):
    from conftest import tiny_run_config

    monkeypatch.setattr(client_module, "_sleep", lambda s: None)
    with BatchStandIn(scripted_answer) as server:
        batch = {"api_base": server.api_base, "batch": True, "batch_poll_s": 0.01, "batch_timeout_s": 0.05}
        overrides = {"llm": {"model": "openai/standin-generator", **batch},
                     "judge": {"model": "openai/standin-judge", **batch}}
        config = from_dict(tiny_run_config(tiny_slm_dir, **overrides))
        store = start_run(config, runs_root=tmp_path, run_id="batches")
        server.hold = True  # the provider takes longer than this run waits: the run stops at its first batch
        with pytest.raises(BatchPending):
            Pipeline(store, config).run()
        assert store.state().status == "failed" and server.batches_created == 1

        server.hold = False
        assert Pipeline(store, config).run() == "completed"
        assert store.accepted_samples(1)
        bodies = [server.files[b["input_file_id"]] for b in server.batches.values()]
        assert len(set(bodies)) == len(bodies) == server.batches_created  # no request set was batched twice
        staged = {json.loads(line)["body"]["model"] for body in bodies for line in body.decode().splitlines()}
        assert staged == {"standin-generator", "standin-judge"}  # generation and QC rounds went as batches
        assert server.chat_calls == 2  # only the two one-off "does the model answer" checks went directly
        batched = {b["metadata"]["pada_stage"] for b in server.batches.values()}
        assert {"error_analysis", "patterns", "strategies", "quality"} <= batched  # every many-request stage
        assert any(stage.startswith("generation_") for stage in batched)
    store.close()

"""LLMClient end to end through litellm, with the ScriptedLLM test stand-in as the provider."""

import json
import sys
import threading
import types
import uuid

import pytest
from pydantic import BaseModel

from doubles import scripted_llm as scripted
from pada.llm import JSONRequest, LLMClient, LLMConfig, LLMConfigError
from pada.llm import client as client_module
from pada.llm.cache import ReplyCache


class Item(BaseModel):
    sample_idx: int
    error_cause: str


class Analysis(BaseModel):
    items: list[Item]


class Verdict(BaseModel):
    label: str
    score: int


GOOD_VERDICT = '{"label": "ok", "score": 7}'
USER = [{"role": "user", "content": "Judge this sample."}]


@pytest.fixture
def stand_in():
    return scripted.register()


@pytest.fixture
def sleeps(monkeypatch):
    """Backoff waits requested by the client, without actually waiting."""
    waited: list[float] = []
    monkeypatch.setattr(client_module, "_sleep", waited.append)
    return waited


def make_client(**overrides):
    # A fresh model name per client: "server rejected response_format" is remembered per model.
    settings = {"model": f"scripted/{uuid.uuid4().hex[:8]}", "backoff_base_s": 0.001, **overrides}
    return LLMClient(LLMConfig(**settings))


# -- structured output -----------------------------------------------------------------------------


def test_fenced_reply_with_trailing_commas_validates_first_time(stand_in):
    stand_in.set_script({"Verdict": ['```json\n{"label": "ok", "score": 7,}\n```']})
    result = make_client().complete_json(USER, Verdict, stage="quality")
    assert result.ok
    assert result.value == Verdict(label="ok", score=7)
    assert result.call.attempts == 1
    assert result.error is None


def test_request_carries_response_format_and_schema_in_prompt(stand_in):
    stand_in.set_script({"Verdict": [GOOD_VERDICT]})
    make_client(extra_params={"top_p": 0.9}).complete_json(USER, Verdict, stage="quality", temperature=0.7)
    request = stand_in.received[-1]
    assert request["schema_name"] == "Verdict"
    assert request["params"]["response_format"]["json_schema"]["schema"] == Verdict.model_json_schema()
    assert request["params"]["response_format"]["json_schema"]["strict"] is False
    assert request["params"]["temperature"] == 0.7
    assert request["params"]["top_p"] == 0.9
    last_user = request["messages"][-1]["content"]
    assert last_user.startswith("Judge this sample.")
    assert json.dumps(Verdict.model_json_schema()) in last_user
    assert USER[0]["content"] == "Judge this sample."  # caller's messages untouched


def test_malformed_then_fixed_takes_two_attempts_and_shows_the_error(stand_in):
    stand_in.set_script({"Verdict": ['{"label": "ok"}', GOOD_VERDICT]})
    result = make_client().complete_json(USER, Verdict, stage="quality")
    assert result.ok and result.value.score == 7
    assert result.call.attempts == 2
    retry_turns = stand_in.received[1]["messages"][-2:]
    assert retry_turns[0] == {"role": "assistant", "content": '{"label": "ok"}'}
    assert retry_turns[1]["role"] == "user" and "score" in retry_turns[1]["content"]


def test_never_valid_reply_fails_softly_with_raw_text(stand_in):
    stand_in.set_script({"Verdict": ["no idea, sorry"]})
    result = make_client(schema_retries=2).complete_json(USER, Verdict, stage="quality")
    assert not result.ok
    assert result.value is None
    assert result.raw == "no idea, sorry"
    assert result.error.startswith("parse")
    assert result.call.attempts == 3
    assert result.call.ok is False


def test_bare_list_reply_is_wrapped(stand_in):
    stand_in.set_script({"Analysis": ['[{"sample_idx": 2, "error_cause": "unit conversion"}]']})
    result = make_client().complete_json(USER, Analysis, stage="error_analysis")
    assert result.ok and result.value.items[0].sample_idx == 2


def test_rejected_response_format_is_dropped_and_remembered(stand_in):
    stand_in.set_script({"text": GOOD_VERDICT})  # without response_format the stand-in sees a "text" request
    stand_in.reject_response_format = True
    client = make_client()
    first = client.complete_json(USER, Verdict, stage="quality")
    second = client.complete_json(USER + [{"role": "user", "content": "again"}], Verdict, stage="quality")
    assert first.ok and second.ok
    assert ["response_format" in r["params"] for r in stand_in.received] == [True, False, False]
    assert json.dumps(Verdict.model_json_schema()) in stand_in.received[1]["messages"][-1]["content"]


def test_text_completion(stand_in):
    stand_in.set_script({"text": lambda messages, schema: messages[-1]["content"].upper()})
    result = make_client().complete_text(USER, stage="rephrase")
    assert result.ok and result.value == result.raw == "JUDGE THIS SAMPLE."
    assert "response_format" not in stand_in.received[-1]["params"]


# -- transport retries -----------------------------------------------------------------------------


def test_rate_limit_twice_then_success_is_retried(stand_in, sleeps):
    stand_in.set_script({"Verdict": [GOOD_VERDICT]})
    stand_in.fail_next(2, "rate_limit")
    result = make_client(max_retries=5).complete_json(USER, Verdict, stage="quality")
    assert result.ok
    assert result.call.attempts == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] / 2  # exponential, with jitter


def test_retry_after_header_is_honoured(stand_in, sleeps):
    stand_in.set_script({"Verdict": [GOOD_VERDICT]})
    stand_in.fail_next(1, "rate_limit", retry_after_s=3)
    assert make_client().complete_json(USER, Verdict, stage="quality").ok
    assert sleeps == [pytest.approx(3, abs=0.01)]


@pytest.mark.parametrize("kind", ["timeout", "server_error"])
def test_timeouts_and_5xx_are_retried(stand_in, sleeps, kind):
    stand_in.set_script({"Verdict": [GOOD_VERDICT]})
    stand_in.fail_next(1, kind)
    result = make_client().complete_json(USER, Verdict, stage="quality")
    assert result.ok and result.call.attempts == 2


def test_bad_request_is_not_retried(stand_in, sleeps):
    stand_in.set_script({"Verdict": [GOOD_VERDICT]})
    stand_in.fail_next(1, "bad_request")
    result = make_client().complete_json(USER, Verdict, stage="quality")
    assert not result.ok
    assert result.call.attempts == 1 and sleeps == []
    assert result.error.startswith("BadRequestError")


def test_crash_inside_an_in_process_provider_is_not_retried(stand_in, sleeps):
    def crash(messages, schema):
        raise ValueError("tokenizer exploded")

    stand_in.set_script({"Verdict": crash})
    result = make_client().complete_json(USER, Verdict, stage="quality")
    assert not result.ok and result.call.attempts == 1 and sleeps == []
    assert "tokenizer exploded" in result.error


def test_retries_run_out(stand_in, sleeps):
    stand_in.fail_next(10, "rate_limit")
    result = make_client(max_retries=3).complete_json(USER, Verdict, stage="quality")
    assert not result.ok
    assert result.error.startswith("RateLimitError (HTTP 429) after 3 retries")
    assert result.call.attempts == 4


# -- concurrency -----------------------------------------------------------------------------------


def test_many_preserves_order_and_bounds_concurrency(stand_in):
    in_flight, peak, lock = [0], [0], threading.Lock()

    def echo(messages, schema):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        threading.Event().wait(0.05)
        with lock:
            in_flight[0] -= 1
        number = int(messages[0]["content"].split()[1])
        return json.dumps({"label": f"n{number}", "score": number})

    stand_in.set_script({"Verdict": echo})
    requests = [JSONRequest([{"role": "user", "content": f"item {i}"}], Verdict, "quality") for i in range(12)]
    results = make_client(concurrency=3).complete_json_many(requests)
    assert [r.value.score for r in results] == list(range(12))
    assert 1 < peak[0] <= 3


def test_one_failing_request_does_not_sink_the_batch(stand_in):
    stand_in.set_script({"Verdict": [GOOD_VERDICT]})  # nothing scripted for Analysis: the stand-in answers 400
    requests = [
        JSONRequest(USER, Verdict, "quality"),
        JSONRequest(USER, Analysis, "error_analysis"),
        JSONRequest(USER, Verdict, "quality"),
    ]
    results = make_client().complete_json_many(requests)
    assert [r.ok for r in results] == [True, False, True]
    assert "no script" in results[1].error


# -- cache -----------------------------------------------------------------------------------------


def test_second_run_is_served_from_cache(stand_in, tmp_path):
    stand_in.set_script({"Verdict": [GOOD_VERDICT]})
    config = {"model": "scripted/cache-test", "cache_dir": tmp_path}
    first = make_client(**config).complete_json(USER, Verdict, stage="quality")
    second_client = make_client(**config)
    second = second_client.complete_json(USER, Verdict, stage="quality")
    assert len(stand_in.received) == 1
    assert second.value == first.value
    assert second.call.cache_hit and second.call.cost_usd == 0 and second.call.attempts == 0
    assert second.call.request_hash == first.call.request_hash
    assert second_client.usage_by_stage()["quality"]["cache_hits"] == 1


def test_cache_salt_and_temperature_make_distinct_entries(stand_in, tmp_path):
    stand_in.set_script({"Verdict": [GOOD_VERDICT]})
    client = make_client(model="scripted/salt-test", cache_dir=tmp_path)
    for _ in range(2):
        for salt in ("0", "1"):
            client.complete_json(USER, Verdict, stage="generation", temperature=0.7, cache_salt=salt)
    client.complete_json(USER, Verdict, stage="generation", temperature=0.2, cache_salt="0")
    assert len(stand_in.received) == 3
    assert [c.cache_hit for c in client.calls] == [False, False, True, True, False]


def test_a_sampled_request_carries_a_seed_from_its_salt(stand_in):
    stand_in.set_script({"Verdict": [GOOD_VERDICT]})
    client = make_client(model="scripted/seed-test")
    for salt in ("a", "b", "a"):
        client.complete_json(USER, Verdict, stage="generation", temperature=0.7, cache_salt=salt)
    client.complete_json(USER, Verdict, stage="quality", temperature=0.0, cache_salt="a")
    client.complete_json(USER, Verdict, stage="generation", temperature=0.7)
    seeds = [request["params"].get("seed") for request in stand_in.received]
    assert seeds[0] == seeds[2] != seeds[1] and seeds[0] is not None
    assert seeds[3:] == [None, None]  # greedy, or no salt: no seed


def test_corrupt_cache_entry_is_a_miss(stand_in, tmp_path):
    stand_in.set_script({"Verdict": [GOOD_VERDICT]})
    client = make_client(model="scripted/corrupt-test", cache_dir=tmp_path)
    first = client.complete_json(USER, Verdict, stage="quality")
    ReplyCache(tmp_path).path(first.call.request_hash).write_text('{"text": "{\\"label\\": tru')
    again = client.complete_json(USER, Verdict, stage="quality")
    assert again.ok and not again.call.cache_hit
    assert len(stand_in.received) == 2


def test_failed_replies_are_not_cached(stand_in, tmp_path):
    stand_in.set_script({"Verdict": ["not json", "still not json", "nope", GOOD_VERDICT]})
    client = make_client(model="scripted/fail-cache", cache_dir=tmp_path, schema_retries=2)
    assert not client.complete_json(USER, Verdict, stage="quality").ok
    assert not list(tmp_path.rglob("*.json"))
    assert client.complete_json(USER, Verdict, stage="quality").ok  # asked again, not served a failure


# -- accounting and secrets ------------------------------------------------------------------------


def test_usage_by_stage_sums_calls_and_on_call_sees_each(stand_in):
    stand_in.set_script({"Verdict": [GOOD_VERDICT], "text": "three word reply"})
    seen = []
    client = LLMClient(LLMConfig(model="scripted/usage"), on_call=seen.append)
    client.complete_json(USER, Verdict, stage="quality")
    client.complete_json(USER, Verdict, stage="quality")
    client.complete_text(USER, stage="rephrase")
    usage = client.usage_by_stage()
    quality_calls = [c for c in client.calls if c.stage == "quality"]
    assert usage["quality"]["calls"] == 2
    assert usage["quality"]["prompt_tokens"] == sum(c.prompt_tokens for c in quality_calls) > 0
    assert usage["quality"]["completion_tokens"] == 2 * 4  # '{"label": "ok", "score": 7}' is 4 words
    assert usage["rephrase"] == {"calls": 1, "prompt_tokens": 3, "completion_tokens": 3, "cost_usd": 0.0,
                                 "cache_hits": 0, "failed": 0}  # fmt: skip
    assert seen == client.calls


def test_api_key_never_reaches_cache_or_records(stand_in, tmp_path, monkeypatch):
    secret = "sk-test-DO-NOT-STORE-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    stand_in.set_script({"Verdict": [GOOD_VERDICT]})
    stand_in.fail_next(1, "bad_request")
    client = make_client(cache_dir=tmp_path)
    client.complete_json(USER, Verdict, stage="quality")
    client.complete_json(USER, Verdict, stage="quality")
    written = "".join(path.read_text() for path in tmp_path.rglob("*") if path.is_file())
    records = json.dumps([call.model_dump() for call in client.calls])
    assert written and secret not in written and secret not in records


def test_credentials_in_extra_params_are_refused():
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        LLMConfig(model="openai/gpt-4o-mini", extra_params={"api_key": "sk-123"})


# -- registered providers --------------------------------------------------------------------------


def test_a_registered_provider_is_told_the_stage_and_keyed_on_stage_and_schema(stand_in):
    stand_in.set_script({"quality:Verdict": [GOOD_VERDICT], "Verdict": ['{"label": "other", "score": 1}']})
    client = make_client()
    assert client.complete_json(USER, Verdict, stage="quality").value.label == "ok"
    assert client.complete_json(USER, Verdict, stage="strategies").value.label == "other"
    assert [r["stage"] for r in stand_in.received] == ["quality", "strategies"]
    assert all(r["schema_name"] == "Verdict" for r in stand_in.received)  # sent as response_format json_schema


def test_a_provider_registered_without_json_schema_gets_the_schema_only_in_the_prompt():
    plain = scripted.ScriptedLLM()
    plain.set_script({"text": GOOD_VERDICT})
    client_module.register_provider("plain", plain, json_schema=False)
    try:
        result = LLMClient(LLMConfig(model="plain/x")).complete_json(USER, Verdict, stage="quality")
    finally:
        client_module.unregister_provider("plain")
    assert result.ok and "response_format" not in plain.received[0]["params"]
    assert "JSON schema" in plain.received[0]["messages"][-1]["content"]
    assert "plain" not in client_module.registered_providers()


# -- own providers (local/...) ---------------------------------------------------------------------


def test_missing_own_provider_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(client_module._OWN_PROVIDERS, "local", "pada.llm.no_such_provider")
    with pytest.raises(LLMConfigError, match="pada.llm.no_such_provider"):
        LLMClient(LLMConfig(model="local/qwen"))


def test_own_provider_registers_lazily_once(monkeypatch):
    litellm = client_module._litellm()
    monkeypatch.setattr(litellm, "custom_provider_map", list(litellm.custom_provider_map))
    registrations = []
    stand_in = scripted.ScriptedLLM()
    stand_in.set_script({"text": "from the local provider"})

    def register():
        registrations.append(1)
        litellm.custom_provider_map.append({"provider": "local", "custom_handler": stand_in})

    fake_module = types.ModuleType("fake_local_provider")
    fake_module.register = register
    monkeypatch.setitem(sys.modules, "fake_local_provider", fake_module)
    monkeypatch.setitem(client_module._OWN_PROVIDERS, "local", "fake_local_provider")

    client = LLMClient(LLMConfig(model="local/tiny"))
    assert registrations == []  # nothing happens until the first request
    assert client.complete_text(USER, stage="x").value == "from the local provider"
    assert client.complete_text(USER, stage="x").ok
    assert registrations == [1]

"""The offline `local/` litellm provider, exercised end to end on a tiny random Llama.

The model is random, so its free text is noise; the point of the schema tests is that
constrained decoding still yields complete JSON that matches the schema.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

litellm = pytest.importorskip("litellm")

from pada.llm import local  # noqa: E402

MESSAGES = [{"role": "system", "content": "You grade answers."},
            {"role": "user", "content": "Grade this answer: 42."}]

VERDICT_SCHEMA = {  # small and bounded so even a random model finishes it within max_tokens
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["correct", "wrong", "unsure"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "flag": {"type": "boolean"},
    },
    "required": ["label", "score", "flag"],
    "additionalProperties": False,
}


def _json_schema_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}}


def _assert_valid_verdict(text):
    verdict = json.loads(text)
    assert list(verdict) == ["label", "score", "flag"]  # schema order, not sorted
    assert verdict["label"] in {"correct", "wrong", "unsure"}
    assert isinstance(verdict["score"], int) and not isinstance(verdict["score"], bool)
    assert -99 <= verdict["score"] <= 99  # minimum/maximum became a 2-digit bound
    assert isinstance(verdict["flag"], bool)


@pytest.fixture(autouse=True)
def local_provider():
    """Register the provider for each test, then restore litellm's provider list."""
    saved = list(litellm.custom_provider_map)
    local.register()
    yield
    litellm.custom_provider_map = saved


@pytest.fixture(scope="module")
def model_name(tiny_slm_dir):
    """Loads the tiny model once in float32: for a model this small CPU bf16 matmuls are ~4x slower
    (the bf16 default pays off from ~0.5B parameters up, shared/MEASURED.md)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PADA_LOCAL_DTYPE", "float32")
        local.get_local_model(str(tiny_slm_dir))
    return f"local/{tiny_slm_dir}"


def test_register_is_idempotent_and_keeps_other_providers():
    other = {"provider": "other", "custom_handler": litellm.CustomLLM()}
    litellm.custom_provider_map = [other]
    local.register()
    local.register()
    providers = [item["provider"] for item in litellm.custom_provider_map]
    assert providers == ["other", "local"]
    assert isinstance(litellm.custom_provider_map[1]["custom_handler"], local.LocalLLM)


def test_completion_returns_model_response_with_usage_and_zero_cost(model_name):
    response = litellm.completion(model=model_name, messages=MESSAGES, max_tokens=8, temperature=0)
    assert isinstance(response, litellm.ModelResponse)
    assert isinstance(response.choices[0].message.content, str)
    usage = response.usage
    assert usage.prompt_tokens > 10  # system + user turns through the chat template
    assert 1 <= usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert response.choices[0].finish_reason in {"stop", "length"}
    assert litellm.completion_cost(completion_response=response) == 0.0


def test_greedy_is_deterministic_and_stop_cuts_the_text(model_name):
    first = litellm.completion(model=model_name, messages=MESSAGES, max_tokens=12, temperature=0)
    again = litellm.completion(model=model_name, messages=MESSAGES, max_tokens=12, temperature=0)
    text = first.choices[0].message.content
    assert text == again.choices[0].message.content
    assert first.usage.completion_tokens == 12 and first.choices[0].finish_reason == "length"
    assert len(text) >= 2
    stop = text[len(text) // 2:len(text) // 2 + 2]
    stopped = litellm.completion(model=model_name, messages=MESSAGES, max_tokens=12, temperature=0, stop=[stop])
    assert stopped.choices[0].message.content == text[:text.find(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def test_json_schema_is_enforced_by_constrained_decoding(model_name):
    response = litellm.completion(model=model_name, messages=MESSAGES, max_tokens=40, temperature=0,
                                  response_format=_json_schema_format(VERDICT_SCHEMA))
    assert response._hidden_params["pada_decoding"].startswith("constrained")
    assert response.choices[0].finish_reason == "stop"  # the JSON closed before max_tokens
    _assert_valid_verdict(response.choices[0].message.content)


def test_seeded_sampling_repeats_and_stays_inside_the_schema(model_name):
    def sample(seed):
        response = litellm.completion(model=model_name, messages=MESSAGES, max_tokens=40, temperature=1.0,
                                      seed=seed, response_format=_json_schema_format(VERDICT_SCHEMA))
        _assert_valid_verdict(response.choices[0].message.content)
        return response.choices[0].message.content

    assert sample(7) == sample(7)
    assert len({sample(seed) for seed in range(4)}) > 1  # sampling, not greedy


def test_concurrent_requests_are_batched_and_each_answered(model_name, tiny_slm_dir):
    model = local.get_local_model(str(tiny_slm_dir))
    calls = []
    real_generate = model.model.generate

    def counting_generate(*args, **kwargs):  # a spy: the real generate still runs
        calls.append(kwargs["input_ids"].shape[0])
        return real_generate(*args, **kwargs)

    model.model.generate = counting_generate
    try:
        def ask(i):
            response_format = _json_schema_format(VERDICT_SCHEMA) if i % 2 else None
            return litellm.completion(model=model_name, messages=MESSAGES + [{"role": "user", "content": "x" * i}],
                                      max_tokens=40 if i % 2 else 6, temperature=0, response_format=response_format)

        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(ask, range(6)))
    finally:
        del model.model.generate
    assert sum(calls) == 6 and len(calls) < 6  # at least two requests shared a generate call
    for i, response in enumerate(responses):
        if i % 2:
            _assert_valid_verdict(response.choices[0].message.content)
        else:  # a free-text row keeps its own max_tokens inside a batch
            assert response.usage.completion_tokens <= 6


def test_unsupported_schema_falls_back_to_free_generation(model_name):
    schema = {"type": "object", "properties": {"host": {"type": "string", "format": "hostname"}}}
    response = litellm.completion(model=model_name, messages=MESSAGES, max_tokens=5, temperature=0,
                                  response_format=_json_schema_format(schema))
    assert response._hidden_params["pada_decoding"].startswith("unconstrained (schema not supported")
    assert response.usage.completion_tokens <= 5


def test_constrained_decoding_can_be_switched_off(model_name, monkeypatch):
    monkeypatch.setenv("PADA_LOCAL_CONSTRAINED", "0")
    response = litellm.completion(model=model_name, messages=MESSAGES, max_tokens=5, temperature=0,
                                  response_format=_json_schema_format(VERDICT_SCHEMA))
    assert response._hidden_params["pada_decoding"].startswith("unconstrained (constrained decoding switched off")


def test_chat_template_keeps_turn_order_and_continues_a_final_assistant_turn(model_name, tiny_slm_dir):
    model = local.get_local_model(str(tiny_slm_dir))
    prompt = model.render_prompt(MESSAGES)
    assert prompt.index("You grade answers.") < prompt.index("Grade this answer: 42.")
    prefilled = model.render_prompt(MESSAGES + [{"role": "assistant", "content": "Verdict:"}])
    assert prefilled.rstrip().endswith("Verdict:")


def test_response_format_variants_map_to_schemas():
    from pydantic import BaseModel

    class Verdict(BaseModel):
        label: str

    assert local._json_schema_of(None) is None
    assert local._json_schema_of({"type": "text"}) is None
    assert local._json_schema_of({"type": "json_object"}) == {"type": "object"}
    assert local._json_schema_of(_json_schema_format(VERDICT_SCHEMA)) == VERDICT_SCHEMA
    assert local._json_schema_of(Verdict)["properties"]["label"]["type"] == "string"

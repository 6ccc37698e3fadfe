"""Credentials are masked, by value, in everything the client keeps: replies, the cache, call records.

The servers here are hostile on purpose: they echo the request's headers (Authorization with the key
from OPENAI_API_KEY, extra_headers, HTTP basic auth from the user-info in `api_base`) back as the reply
or inside an error message, the way a misconfigured proxy or a prompt-injected model might.
"""

import base64
import json

import pytest
from pydantic import BaseModel
from test_llm_http import SECRET as KEY  # OPENAI_API_KEY, set by the autouse offline_env
from test_llm_http import StubServer, chat_reply, error_reply, offline_env  # noqa: F401

from pada.llm import LLMClient, LLMConfig
from pada.llm import client as client_module
from pada.llm.cache import ReplyCache
from pada.llm.client import MASK, LLMConfigError, redact, register_provider, secret_values, unregister_provider

HEADER_SECRET = "hdr-secret-value-4242"
URL_PASSWORD = "pw-secret-7777"


@pytest.fixture(autouse=True)
def credentials_by_reference(monkeypatch):
    """A run config names credentials as ${VAR}: its values live only in the environment and the request."""
    monkeypatch.setenv("GATEWAY_SECRET", HEADER_SECRET)
    monkeypatch.setenv("GATEWAY_PASSWORD", URL_PASSWORD)
USER = [{"role": "user", "content": "Say something."}]


class Echo(BaseModel):
    text: str


def echo_headers(stub):
    """A server that answers with the headers of the request it got (JSON reply, schema `Echo`)."""
    def answer(body):
        headers = stub.requests[-1]["headers"]
        return chat_reply(body, json.dumps({"text": json.dumps(headers)}))
    return answer


def everything_kept(client: LLMClient, results, cache_dir) -> str:
    written = "".join(p.read_text() for p in cache_dir.rglob("*") if p.is_file())
    records = json.dumps([c.model_dump() for c in client.calls])
    replies = json.dumps([[r.raw, r.error, r.value.model_dump() if isinstance(r.value, BaseModel) else r.value]
                          for r in results])
    return written + records + replies


def run_echo(tmp_path, api_base_of, **settings):
    stub = StubServer(lambda body: (500, {}, {}))
    stub.answer = echo_headers(stub)
    with stub:
        config = LLMConfig(model="openai/echo", api_base=api_base_of(stub), cache_dir=tmp_path, max_retries=0,
                           **settings)
        client = LLMClient(config)
        results = [client.complete_json(USER, Echo, stage="quality"), client.complete_json(USER, Echo, stage="quality")]
    return stub, client, results


def test_a_reply_echoing_the_api_key_is_stored_masked(tmp_path):
    stub, client, results = run_echo(tmp_path, lambda s: s.api_base)
    assert stub.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"  # the key was really sent...
    assert results[0].ok and MASK in results[0].value.text
    assert results[1].call.cache_hit and results[1].value == results[0].value
    assert KEY not in everything_kept(client, results, tmp_path)  # ...and kept nowhere


def test_extra_headers_values_are_masked(tmp_path):
    headers = {"extra_headers": {"X-Gateway-Auth": "Token ${GATEWAY_SECRET}"}}
    stub, client, results = run_echo(tmp_path, lambda s: s.api_base, extra_params=headers)
    assert stub.requests[0]["headers"]["X-Gateway-Auth"] == f"Token {HEADER_SECRET}"
    kept = everything_kept(client, results, tmp_path)
    assert results[0].ok and HEADER_SECRET not in kept and KEY not in kept


def test_the_password_in_api_base_user_info_is_masked(tmp_path):
    def with_user_info(stub):
        return stub.api_base.replace("http://", "http://bob:${GATEWAY_PASSWORD}@")

    stub, client, results = run_echo(tmp_path, with_user_info)
    sent = json.dumps(stub.requests[0]["headers"])
    basic = base64.b64encode(f"bob:{URL_PASSWORD}".encode()).decode()
    assert URL_PASSWORD in sent or basic in sent  # httpx sends user-info as HTTP basic auth
    kept = everything_kept(client, results, tmp_path)
    assert results[0].ok and URL_PASSWORD not in kept and basic not in kept


def test_an_error_message_echoing_the_key_is_recorded_masked(tmp_path):
    stub = StubServer(lambda body: error_reply(400, f"bad request from {stub.requests[-1]['headers']}"))
    with stub:
        client = LLMClient(LLMConfig(model="openai/echo-error", api_base=stub.api_base, max_retries=0))
        result = client.complete_json(USER, Echo, stage="quality")
    assert not result.ok and result.error and MASK in result.error
    assert KEY not in result.error and KEY not in json.dumps([c.model_dump() for c in client.calls])


def test_a_cache_entry_written_with_a_key_in_it_is_served_masked(tmp_path):
    config = LLMConfig(model="openai/cached", cache_dir=tmp_path)
    client = LLMClient(config)
    key = client._cache_key({"model": config.model, "messages": USER}, client_module.JSONRequest(USER, None, "x"))
    ReplyCache(tmp_path).put(key, f"the key is {KEY}", {})
    assert client._from_cache(key, None) == (f"the key is {MASK}", f"the key is {MASK}")


def test_secret_values_come_from_what_litellm_sends_not_only_from_names(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-abcdefgh")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-abcdefgh")
    monkeypatch.setenv("MY_PROXY_URL", "https://carol:proxy%40pass99@proxy.example/v1")  # no credential-like name
    monkeypatch.setenv("GROQ_API_KEY", "gsk-groq-abcdefgh")
    monkeypatch.setenv("URL_PW", "p%2Fss-word9")
    monkeypatch.setenv("HDR_TOKEN", "hdr-token-abcdefgh")
    config = LLMConfig(model="groq/llama", api_base="http://bob:${URL_PW}@h/v1",
                       extra_params={"extra_headers": {"Authorization": "Bearer ${HDR_TOKEN}"}})
    client_module._litellm()  # litellm's own key lookup is consulted once it is loaded
    secrets = secret_values(config)
    for value in ("aws-secret-abcdefgh", "sk-ant-abcdefgh", "gsk-groq-abcdefgh", KEY, "proxy@pass99",
                  "p/ss-word9", "p%2Fss-word9", "hdr-token-abcdefgh", "Bearer hdr-token-abcdefgh"):
        assert value in secrets, value
    assert base64.b64encode(b"bob:p/ss-word9").decode() in secrets
    assert redact("Bearer hdr-token-abcdefgh and p/ss-word9", secrets) == f"{MASK} and {MASK}"
    assert "no-key-needed" not in secrets and "http://h/v1" not in secrets


def test_short_values_are_not_treated_as_secrets(monkeypatch):
    monkeypatch.setenv("SOME_TOKEN_ENABLED", "true")  # a flag, not a key: masking it would mangle replies
    monkeypatch.setenv("PW", "pw")
    assert "true" not in secret_values(LLMConfig(model="openai/x", api_base="http://u:${PW}@h/v1"))


def test_a_registered_provider_echoing_its_headers_is_masked(tmp_path):
    litellm = client_module._litellm()

    class EchoLLM(litellm.CustomLLM):
        def completion(self, *args, **kwargs):
            response = kwargs["model_response"]
            response.choices[0].message.content = f"headers: {kwargs.get('headers')}"
            return response

    register_provider("echo", EchoLLM())
    try:
        config = LLMConfig(model="echo/x", cache_dir=tmp_path,
                           extra_params={"extra_headers": {"Authorization": "Bearer ${GATEWAY_SECRET}"}})
        client = LLMClient(config)
        result = client.complete_text(USER, stage="x")
    finally:
        unregister_provider("echo")
    assert result.ok and MASK in result.raw
    assert HEADER_SECRET not in everything_kept(client, [result], tmp_path)


@pytest.mark.parametrize("settings", [
    {"api_base": "http://bob:hunter22@gateway/v1"},
    {"extra_params": {"extra_headers": {"Authorization": "Bearer sk-literal-123456"}}},
    {"extra_params": {"extra_headers": {"X-Api-Key": "literal-key-123456"}}},
    {"extra_params": {"headers": {"Cookie": "session=abc123456"}}},
])
def test_a_credential_written_into_the_settings_is_refused(settings):
    """The run config is stored in the run directory: a credential must be named, not written out."""
    with pytest.raises(LLMConfigError, match="environment variable reference"):
        LLMConfig(model="openai/x", **settings)


def test_references_are_kept_as_written_and_sent_as_values(tmp_path, monkeypatch):
    config = LLMConfig(model="openai/x", api_base="http://bob:${GATEWAY_PASSWORD}@h/v1",
                       extra_params={"extra_headers": {"Authorization": "Bearer ${GATEWAY_SECRET}"}})
    assert "${GATEWAY_SECRET}" in json.dumps(config.extra_params) and URL_PASSWORD not in config.api_base
    kwargs = LLMClient(config)._litellm_kwargs({"extra_headers": config.extra_params["extra_headers"]}, None)
    assert kwargs["extra_headers"]["Authorization"] == f"Bearer {HEADER_SECRET}"
    assert kwargs["api_base"] == f"http://bob:{URL_PASSWORD}@h/v1"
    monkeypatch.delenv("GATEWAY_SECRET")
    with pytest.raises(LLMConfigError, match="GATEWAY_SECRET"):
        LLMClient(config)._litellm_kwargs({"extra_headers": config.extra_params["extra_headers"]}, None)

"""ScriptedLLM — a TEST STAND-IN for a real LLM. Lives with the tests; the product never names it.

It is a litellm `CustomLLM` installed as provider `scripted` (model strings `scripted/<anything>`)
through `pada.llm.client.register_provider`, exactly the way the bundled `local/...` provider is.
Because it sits *below* litellm, tests exercise the real `LLMClient` end to end: prompt building,
response_format, litellm's exception mapping, retries, parsing, caching and accounting. Nothing
here touches the network.

Usage in a test::

    stand_in = scripted_llm.register()
    stand_in.set_script({
        "ErrorAnalysis": ['```json\\n{"error_cause": "x",}\\n```'],  # replies consumed in order
        "quality:Verdict": '{"label": "ok"}',                       # only for requests of stage "quality"
        "text": lambda messages, schema: "plain answer",            # or computed from the prompt
    })
    stand_in.fail_next(2, "rate_limit")                              # simulate transient errors
    client = LLMClient(LLMConfig(model="scripted/test"))

A request is answered by the first script key of `"<stage>:<schema name>"` and `"<schema name>"`,
where the schema name is `response_format["json_schema"]["name"]` (the pydantic class name the
client sends) or "text" without a response_format, and the stage is the `LLMCall` stage the client
passes to registered providers. A list handler repeats its last reply once exhausted. Every request
is appended to `received`.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from pada.llm.client import _litellm, register_provider

Handler = Callable[[list[dict], dict | None], str] | list[str] | str

_ERROR_KINDS = ("rate_limit", "timeout", "server_error", "bad_request")


def _custom_llm_base() -> type:
    return _litellm().CustomLLM


class ScriptedLLM(_custom_llm_base()):  # type: ignore[misc]
    """Test stand-in: answers from a script, records requests, fails on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.delay_s = 0.0  # sleep per request, e.g. to check that calls overlap
        self.reject_response_format = False  # answer 400 to any request carrying response_format
        self._script: dict[str, Handler] = {}
        self._positions: dict[str, int] = {}
        self._failures: list[tuple[str, float | None]] = []
        self._lock = threading.Lock()

    # -- scripting -------------------------------------------------------------------------------

    def set_script(self, script: dict[str, Handler]) -> None:
        with self._lock:
            self._script = dict(script)
            self._positions = {}

    def fail_next(self, count: int, kind: str = "rate_limit", retry_after_s: float | None = None) -> None:
        """Make the next `count` requests raise: rate_limit (429), timeout, server_error (500), bad_request (400)."""
        if kind not in _ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}; use one of {_ERROR_KINDS}")
        with self._lock:
            self._failures += [(kind, retry_after_s)] * count

    # -- litellm CustomLLM interface -------------------------------------------------------------

    def completion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict, model_response: Any,
                   print_verbose: Callable, encoding: Any, api_key: Any, logging_obj: Any, optional_params: dict,
                   *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        schema_name, schema = _schema_of(optional_params)
        stage = _stage_of(kwargs.get("litellm_params"))
        with self._lock:
            self.received.append(
                {
                    "model": model,
                    "stage": stage,
                    "messages": copy.deepcopy(messages),
                    "schema_name": schema_name,
                    "schema": schema,
                    "params": copy.deepcopy(optional_params),
                    "api_key": api_key,
                    "api_base": api_base,
                    "headers": copy.deepcopy(kwargs.get("headers")),
                }
            )
            failure = self._failures.pop(0) if self._failures else None
        if self.delay_s:
            time.sleep(self.delay_s)
        if failure is not None:
            raise _error(*failure, model=model)
        if self.reject_response_format and "response_format" in optional_params:
            raise _litellm().BadRequestError(
                message="this server does not support response_format", llm_provider="scripted", model=model
            )
        text = self._reply(stage, schema_name, messages, schema, model)
        return _fill_response(model_response, model, messages, text)

    # -- internals -------------------------------------------------------------------------------

    def _reply(self, stage: str | None, name: str, messages: list, schema: dict | None, model: str) -> str:
        with self._lock:
            key = next((k for k in (f"{stage}:{name}", name) if k in self._script), name)
            handler = self._script.get(key)
            if isinstance(handler, list):
                position = self._positions.get(key, 0)
                self._positions[key] = position + 1
        if handler is None:
            # A 400, not a generic exception: litellm maps those to APIConnectionError, which is retried.
            raise _litellm().BadRequestError(
                message=f"ScriptedLLM has no script for {key!r} (scripted: {sorted(self._script)})",
                llm_provider="scripted",
                model=model,
            )
        if isinstance(handler, str):
            return handler
        if isinstance(handler, list):
            return handler[min(position, len(handler) - 1)]
        return handler(copy.deepcopy(messages), schema)


PROVIDER = "scripted"


def register(stand_in: ScriptedLLM | None = None) -> ScriptedLLM:
    """Install `stand_in` (or a fresh ScriptedLLM) as provider `scripted`, replacing an earlier one."""
    stand_in = stand_in or ScriptedLLM()
    register_provider(PROVIDER, stand_in, json_schema=True)
    return stand_in


def installed() -> ScriptedLLM | None:
    """The stand-in litellm currently routes `scripted/...` to, if any."""
    for item in _litellm().custom_provider_map:
        if item.get("provider") == PROVIDER and isinstance(item.get("custom_handler"), ScriptedLLM):
            return item["custom_handler"]
    return None


def word_count(text: str) -> int:
    return len(str(text).split())


def _schema_of(optional_params: dict) -> tuple[str, dict | None]:
    response_format = optional_params.get("response_format") or {}
    json_schema = response_format.get("json_schema") if isinstance(response_format, dict) else None
    if not json_schema:
        return "text", None
    return json_schema.get("name", "text"), json_schema.get("schema")


def _stage_of(litellm_params: dict | None) -> str | None:
    metadata = (litellm_params or {}).get("metadata") or {}
    return metadata.get("stage") if isinstance(metadata, dict) else None


def _fill_response(model_response: Any, model: str, messages: list, text: str) -> Any:
    """Realistic reply: content plus usage from word counts (prompt = all message contents)."""
    from litellm.types.utils import Usage

    prompt_tokens = sum(word_count(message.get("content") or "") for message in messages)
    completion_tokens = word_count(text)
    model_response.choices[0].message.content = text
    model_response.model = f"scripted/{model}"
    model_response.usage = Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
    )
    return model_response


def _error(kind: str, retry_after_s: float | None, model: str) -> Exception:
    import httpx

    litellm = _litellm()
    if kind == "rate_limit":
        headers = {"retry-after": str(retry_after_s)} if retry_after_s is not None else {}
        response = httpx.Response(429, headers=headers, request=httpx.Request("POST", "http://scripted.invalid"))
        return litellm.RateLimitError(message="scripted rate limit", llm_provider="scripted", model=model,
                                      response=response)  # fmt: skip
    if kind == "timeout":
        return litellm.Timeout(message="scripted timeout", model=model, llm_provider="scripted")
    if kind == "server_error":
        return litellm.InternalServerError(message="scripted server error", llm_provider="scripted", model=model)
    return litellm.BadRequestError(message="scripted bad request", llm_provider="scripted", model=model)

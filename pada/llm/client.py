"""LLMClient: the one way into LLMs for the whole project (litellm underneath).

A user names any model with a litellm string — `openai/gpt-4o-mini`,
`anthropic/...`, `bedrock/...`, `hosted_vllm/<model>` or `openai/<model>` with
`api_base` for a vLLM / Ollama server, `local/<alias or path.gguf>` for a GGUF that
`pada.llm.engine` serves with llama-server (reached like any `api_base` server) — and
litellm's usual environment variables (OPENAI_API_KEY, OPENAI_API_BASE, ...)
work unchanged. API keys are read by litellm from the environment only; this
module never puts one in a request dict, a cache key, a cache file or a record,
and masks, by value, any credential a server echoes into a reply or an error
before it is cached, recorded or returned (`secret_values`, `redact`).
An in-process model (a test's fake, an experiment's own) plugs in with
`register_provider(name, handler, json_schema=...)`.

What the client adds on top of `litellm.completion`:
- structured output: `response_format` json_schema where the provider takes it
  (dropped for good per model after a 400 that names it) plus the schema in the
  prompt, also for local/ models whose grammar enforces it (measured: without the
  schema text the bundled 0.5B judge's scores went from all 9-10 to all 1-5);
  replies are repaired, validated with pydantic and, on a validation error,
  re-asked with the error shown (`schema_retries` times);
- retries with exponential backoff + jitter on rate limits, timeouts,
  connection errors and 5xx, honouring Retry-After; never on other 4xx;
- bounded concurrency (`complete_json_many`, and a semaphore shared by all
  threads using one client);
- an on-disk reply cache (`pada.llm.cache`) keyed by the full request;
- provider batches (`batch: true`, `pada.llm.batch`): a many-request call's uncached requests go
  out as one batch whose replies then take the path above (validation, re-asks, cache);
- accounting: one `pada.records.LLMCall` per request (tokens summed over
  attempts, cost from litellm's local cost map, latency, stage), kept in
  `client.calls` and passed to `on_call`.

Cost: each `complete_*` call makes 0 (cache hit) to
(1 + schema_retries) × (1 + max_retries) requests; usually 1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from pada.errors import PadaError
from pada.llm.batch import BATCH_PROVIDERS, BatchLedger, BatchRunner, BatchSettings, batch_model, request_set_hash
from pada.llm.cache import ReplyCache, request_key
from pada.llm.jsonparse import ReplyError, parse_and_validate
from pada.records import LLMCall, Message

# litellm reads this when it is imported: without it, it tries to download the cost map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

# litellm's providers whose chat endpoint accepts OpenAI's `response_format: json_schema`
# (OpenAI-compatible servers such as vLLM; litellm maps it for Ollama). In-process providers
# say so themselves when they register (`register_provider(..., json_schema=True)`).
_JSON_SCHEMA_PROVIDERS = {"openai", "hosted_vllm", "vllm", "ollama", "ollama_chat", "lm_studio"}

# Models whose server answered 400 to response_format: never sent again in this process.
_NO_RESPONSE_FORMAT: set[str] = set()
_NO_RESPONSE_FORMAT_LOCK = threading.Lock()

# Providers implemented in this project as litellm plugins; their module's register() runs before the
# first call. (`local/` is not one: its requests go over HTTP to llama-server, see `_local_route`.)
_OWN_PROVIDERS: dict[str, str] = {}

# In-process providers installed with `register_provider`: name -> accepts response_format json_schema.
_REGISTERED: dict[str, bool] = {}
_REGISTERED_LOCK = threading.Lock()

REMOTE_TIMEOUT_S = 120.0  # `timeout_s: null` for a hosted API or a GPU server
LOCAL_TIMEOUT_S = 1800.0  # ... and for local/ models, served by llama-server on this machine's CPU
_RETRY_AFTER_CAP_S = 120.0  # a server asking for longer than this is treated as asking for this

# What a direct call passes to litellm besides the request itself; left out of a batch line's body.
_TRANSPORT_PARAMS = {"timeout", "num_retries", "max_retries", "api_base", "api_key", "metadata", "extra_headers",
                     "headers"}


class LLMConfigError(PadaError):
    """The LLM settings cannot work (unknown provider module, bad values)."""


def register_provider(name: str, handler: Any, *, json_schema: bool = False) -> None:
    """Route model strings `<name>/...` to `handler`, a litellm `CustomLLM`, in this process.

    The one way to plug an in-process model into the client: a test's fake model or an
    experiment's own one (registered under `local`, it takes precedence over llama-server). A handler
    registered earlier under `name` is replaced; other providers are kept.

    `json_schema=True` says the handler reads OpenAI's `response_format: json_schema`, so the
    client sends the schema there as well as in the prompt. The handler also receives the
    request's stage in `litellm_params["metadata"]["stage"]` (only registered providers get it;
    nothing extra is sent to a remote API). Plain exceptions it raises count as bugs, not as
    network errors, and are not retried.
    """
    if not name or "/" in name:
        raise LLMConfigError(f"provider name must be a non-empty word without '/', got {name!r}")
    litellm = _litellm()
    with _REGISTERED_LOCK:
        others = [item for item in litellm.custom_provider_map if item.get("provider") != name]
        litellm.custom_provider_map = [*others, {"provider": name, "custom_handler": handler}]
        _REGISTERED[name] = json_schema


def unregister_provider(name: str) -> None:
    """Undo `register_provider(name, ...)`; a no-op for a name that was never registered."""
    litellm = _litellm()
    with _REGISTERED_LOCK:
        litellm.custom_provider_map = [item for item in litellm.custom_provider_map if item.get("provider") != name]
        _REGISTERED.pop(name, None)


def registered_providers() -> dict[str, bool]:
    """{name: accepts json_schema} for the providers installed with `register_provider`."""
    with _REGISTERED_LOCK:
        return dict(_REGISTERED)


@dataclass
class LLMConfig:
    """Settings for one LLMClient.

    Model: `model`, `api_base`, `extra_params`. Sampling: `temperature`,
    `max_tokens`. Robustness: `max_retries`, `schema_retries`, `timeout_s`,
    `backoff_base_s`, `backoff_max_s`. Throughput: `concurrency`. Reuse: `cache_dir`.
    """

    model: str = field(
        default="openai/gpt-4o-mini",
        metadata={"help": "litellm model string, e.g. openai/gpt-4o-mini, hosted_vllm/<name>, "
                          "local/<bundled alias or path.gguf> (served by llama-server)"},
    )
    api_base: str | None = field(
        default=None,
        metadata={"help": "server URL for OpenAI-compatible servers (vLLM, Ollama); None = litellm's default/env"},
    )
    temperature: float = field(default=0.0, metadata={"help": "default sampling temperature; requests may override"})
    max_tokens: int = field(default=1024, metadata={"help": "default reply length limit; requests may override"})
    concurrency: int = field(default=8, metadata={"help": "requests in flight at once, across all threads"})
    max_retries: int = field(
        default=5, metadata={"help": "retries on rate limits / timeouts / connection errors / 5xx"}
    )
    schema_retries: int = field(
        default=2, metadata={"help": "re-asks after a reply that fails JSON validation (error shown to the model)"}
    )
    timeout_s: float | None = field(
        default=None,
        metadata={"help": "per-request timeout in seconds; null = 120 for a remote server, 1800 for a local/ model "
                          "(a CPU llama-server works through its queue for minutes, and a request retried after a "
                          "timeout is answered again from the start)"})
    cache_dir: Path | None = field(default=None, metadata={"help": "on-disk reply cache; None = no cache"})
    extra_params: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "passed through to litellm.completion, e.g. {'top_p': 0.9}"}
    )
    backoff_base_s: float = field(default=1.0, metadata={"help": "first retry waits about this long, then doubles"})
    backoff_max_s: float = field(default=30.0, metadata={"help": "longest wait between retries"})
    batch: bool = field(
        default=False,
        metadata={"help": "send each stage's many requests (generation, QC rounds, ...) as one provider batch "
                          "(openai/, hosted_vllm/, bedrock/ models; pada/llm/batch.py); slower, usually cheaper"},
    )
    batch_poll_s: float = field(default=30.0, metadata={"help": "first wait between polls of a batch, then doubles"})
    batch_poll_max_s: float = field(default=300.0, metadata={"help": "longest wait between polls of a batch"})
    batch_timeout_s: float = field(
        default=86_400.0,
        metadata={"help": "stop waiting for a batch after this long (the stage fails; running again polls the "
                          "same batch)"},
    )

    def __post_init__(self) -> None:
        if not self.model or not isinstance(self.model, str):
            raise LLMConfigError("LLM model is empty: pass a litellm model string such as openai/gpt-4o-mini")
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir).expanduser()
        self.extra_params = dict(self.extra_params or {})
        for name in ("concurrency", "max_tokens"):
            if getattr(self, name) < 1:
                raise LLMConfigError(f"LLM {name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_retries", "schema_retries", "backoff_base_s", "backoff_max_s"):
            if getattr(self, name) < 0:
                raise LLMConfigError(f"LLM {name} must not be negative, got {getattr(self, name)}")
        for name in ("batch_poll_s", "batch_poll_max_s", "batch_timeout_s", "timeout_s"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise LLMConfigError(f"LLM {name} must be positive, got {getattr(self, name)}")
        if self.batch and self.model.split("/", 1)[0] not in BATCH_PROVIDERS:
            raise LLMConfigError(f"LLM batch: true needs a model whose provider has a batch API "
                                 f"({', '.join(p + '/' for p in BATCH_PROVIDERS)}), got {self.model!r}")
        secret_params = sorted(k for k in self.extra_params if _looks_like_credential(k))
        if secret_params:
            raise LLMConfigError(
                f"LLM extra_params must not carry credentials ({', '.join(secret_params)}): "
                "set the provider's environment variable (e.g. OPENAI_API_KEY) instead"
            )
        _refuse_literal_credentials(self.api_base, self.extra_params)


@dataclass
class JSONRequest:
    """One request for `complete_json_many`. `schema=None` asks for plain text instead.

    `cache_salt` makes otherwise identical requests distinct cache entries (e.g. the
    sample index when drawing several samples at temperature 0.7); a sampled request
    also gets a `seed` derived from it, so the same request draws the same reply again
    where the provider honours seeds (llama-server, vLLM, OpenAI best-effort).
    """

    messages: list[Message]
    schema: type[BaseModel] | None
    stage: str
    temperature: float | None = None
    max_tokens: int | None = None
    cache_salt: str | None = None


@dataclass
class StructuredResult(Generic[T]):
    """The outcome of one request. Nothing is lost: `raw` keeps the last reply even when it never validated."""

    value: T | None
    raw: str | None
    error: str | None
    call: LLMCall

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass
class _Tally:
    """What one logical request spent, summed over all attempts."""

    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


class _GaveUp(Exception):
    """A request failed for good (non-retryable error, or retries exhausted); str() is the record's error."""


class LLMClient:
    """Thread-safe client; share one per run (or per stage) so concurrency and accounting are global.

    `batch_ledger` keeps the ids of provider batches (`config.batch`) across restarts; without one a
    restarted process creates its batches again.
    """

    def __init__(self, config: LLMConfig, on_call: Callable[[LLMCall], None] | None = None,
                 batch_ledger: BatchLedger | None = None):
        self.config = config
        self.on_call = on_call
        self.batch_ledger = batch_ledger
        self._calls: list[LLMCall] = []
        self._calls_lock = threading.Lock()
        self._on_call_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self._cache = ReplyCache(config.cache_dir) if config.cache_dir else None
        self._provider = config.model.split("/", 1)[0] if "/" in config.model else ""
        self._provider_ready = False
        self._provider_lock = threading.Lock()
        self._schema_support: bool | None = None
        self._local_server: Any = None  # the llama-server of a local/ model, once started
        _check_own_provider_exists(self._provider, config.model)

    # -- public API ------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Import litellm and register our provider (or start a local/ model's server) now, not in the first request."""
        _litellm()
        self._ensure_provider()
        if self._is_local():
            self._local_route()

    @property
    def calls(self) -> list[LLMCall]:
        with self._calls_lock:
            return list(self._calls)

    def complete_json(
        self,
        messages: list[Message],
        schema: type[T],
        stage: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache_salt: str | None = None,
    ) -> StructuredResult[T]:
        """Ask for a JSON reply matching `schema`; `.value` is the validated instance or None."""
        return self._complete(JSONRequest(messages, schema, stage, temperature, max_tokens, cache_salt))

    def complete_text(
        self,
        messages: list[Message],
        stage: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache_salt: str | None = None,
    ) -> StructuredResult[Any]:
        """Ask for plain text; `.value` and `.raw` hold it (value None when the call failed or came back empty)."""
        return self._complete(JSONRequest(messages, None, stage, temperature, max_tokens, cache_salt))

    def complete_json_many(self, requests: Sequence[JSONRequest]) -> list[StructuredResult[Any]]:
        """Run requests `concurrency` at a time; results in input order; a failure never raises (ok False).

        With `config.batch`, the uncached requests first go out as one provider batch and each reply
        takes the normal path from there (validation, re-asks, cache); a request the batch did not
        answer is sent directly. Raises `BatchPending` when the batch outlasts `batch_timeout_s`.
        """
        if not requests:
            return []
        replies = self._batch_replies(requests) if self.config.batch else {}
        workers = min(self.config.concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pada-llm") as pool:
            return list(pool.map(lambda r: self._complete_never_raising(r, replies), requests))

    def usage_by_stage(self) -> dict[str, dict[str, float]]:
        """{stage: {calls, prompt_tokens, completion_tokens, cost_usd, cache_hits, failed}} over `calls`.

        Tokens and cost count what was spent: a cache hit adds a call and a cache_hit, nothing else.
        """
        totals: dict[str, dict[str, float]] = {}
        for call in self.calls:
            row = totals.setdefault(
                call.stage,
                {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "cache_hits": 0, "failed": 0},
            )
            row["calls"] += 1
            row["prompt_tokens"] += call.prompt_tokens
            row["completion_tokens"] += call.completion_tokens
            row["cost_usd"] += call.cost_usd
            row["cache_hits"] += int(call.cache_hit)
            row["failed"] += int(not call.ok)
        return totals

    # -- one logical request ---------------------------------------------------------------------

    def _complete_never_raising(self, request: JSONRequest,
                                batch_replies: Mapping[str, Any] | None = None) -> StructuredResult[Any]:
        try:
            return self._complete(request, batch_replies)
        except Exception as exc:  # one bad request must not sink the batch; the error is recorded
            error = self._redact(f"{type(exc).__name__}: {exc}")
            log.warning("LLM request for stage %s failed: %s", request.stage, error)
            call = LLMCall(stage=request.stage, model=self.config.model, request_hash="", ok=False, attempts=0,
                           error=error)
            self._record(call)
            return StructuredResult(value=None, raw=None, error=error, call=call)

    def _complete(self, request: JSONRequest, batch_replies: Mapping[str, Any] | None = None) -> StructuredResult[Any]:
        """One logical request; `batch_replies` (cache key -> reply body) may already hold its first reply."""
        started = time.perf_counter()
        self._ensure_provider()
        params, key = self._request(request)
        cached = self._from_cache(key, request.schema)
        if cached is not None:
            value, text = cached
            call = LLMCall(stage=request.stage, model=self.config.model, request_hash=key, cache_hit=True,
                           attempts=0, latency_s=time.perf_counter() - started)
            self._record(call)
            return StructuredResult(value=value, raw=text, error=None, call=call)

        tally = _Tally()
        first = (batch_replies or {}).get(key)
        value, raw, error = self._ask_until_valid(params, request.schema, tally, first)
        if value is not None and self._cache is not None:
            self._cache.put(key, raw, tally.usage())
        call = LLMCall(
            stage=request.stage, model=self.config.model, request_hash=key,
            prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens, cost_usd=tally.cost_usd,
            latency_s=time.perf_counter() - started, ok=value is not None, attempts=tally.attempts, error=error,
        )  # fmt: skip
        self._record(call)
        return StructuredResult(value=value, raw=raw, error=error, call=call)

    def _request(self, request: JSONRequest) -> tuple[dict[str, Any], str]:
        """(litellm params, cache key) of a request: the one place a request is built, for direct calls and
        batch lines alike."""
        prompt = with_schema_instruction(request.messages, request.schema)
        params = {
            "model": self.config.model,
            "messages": prompt,
            "temperature": self.config.temperature if request.temperature is None else request.temperature,
            "max_tokens": request.max_tokens or self.config.max_tokens,
            **self.config.extra_params,
        }
        key = self._cache_key(params, request)
        if params["temperature"] and request.cache_salt is not None and "seed" not in params:
            # after the key (the salt is in it): a resumed run redraws an interrupted call the same way
            params["seed"] = seed_from(request.cache_salt)
        if self._provider in registered_providers():  # in-process: tell it the stage (never sent anywhere)
            params["metadata"] = {**(params.get("metadata") or {}), "stage": request.stage}
        return params, key

    def _ask_until_valid(
        self, params: dict[str, Any], schema: type[BaseModel] | None, tally: _Tally, first_reply: Any = None
    ) -> tuple[Any, str | None, str | None]:
        """Send; on a reply that fails validation, show the model its error and ask again. → (value, raw, error).

        `first_reply`: a chat-completion body already received (from a batch) that stands for the first send."""
        conversation = list(params["messages"])
        raw: str | None = None
        error: str | None = None
        rounds = 1 + (self.config.schema_retries if schema is not None else 0)
        for round_no in range(rounds):
            try:
                if round_no == 0 and first_reply is not None:
                    tally.attempts += 1
                    raw = self._read_reply(tally, _litellm().ModelResponse(**first_reply))
                else:
                    raw = self._send({**params, "messages": conversation}, schema, tally)
            except _GaveUp as gave_up:
                return None, raw, str(gave_up)
            if schema is None:
                return (raw, raw, None) if raw.strip() else (None, raw, "empty reply")
            try:
                return parse_and_validate(raw, schema), raw, None
            except ReplyError as bad_reply:
                error = str(bad_reply)
                conversation += [{"role": "assistant", "content": raw}, {"role": "user", "content": _fix_request(error)}]
        return None, raw, error

    # -- one HTTP-level request, with transport retries ------------------------------------------

    def _send(self, params: dict[str, Any], schema: type[BaseModel] | None, tally: _Tally) -> str:
        """One completion, retried on transient errors. Returns the reply text or raises _GaveUp."""
        litellm = _litellm()
        retries = 0
        while True:
            kwargs = self._litellm_kwargs(params, schema)
            tally.attempts += 1
            try:
                with self._slots:
                    response = litellm.completion(**kwargs)
            except Exception as exc:  # litellm maps every provider error into its exception family
                if "response_format" in kwargs and _rejects_response_format(exc):
                    self._drop_response_format()
                    continue
                if not _is_retryable(exc, in_process=self._in_process()):
                    raise _GaveUp(self._redact(f"{_kind(exc)}: {_message(exc)}")) from exc
                if retries >= self.config.max_retries:
                    raise _GaveUp(self._redact(f"{_kind(exc)} after {retries} retries: {_message(exc)}")) from exc
                retries += 1
                _sleep(self._backoff_s(retries, exc))
                continue
            return self._read_reply(tally, response)

    def _read_reply(self, tally: _Tally, response: Any) -> str:
        """A completion's text, its usage and cost added to `tally`."""
        self._add_usage(tally, response)
        # Before anything keeps it (cache, records, the caller): a server may echo the credentials.
        return self._redact(_reply_text(response))

    # -- provider batches ------------------------------------------------------------------------

    def _batch_replies(self, requests: Sequence[JSONRequest]) -> dict[str, Any]:
        """Cache key -> reply body for the uncached requests, from one provider batch ({} when all are cached).

        The ledger key is the hash of ALL the call's request keys, cached ones too: a run killed after
        part of a finished batch reached the cache finds the same batch again instead of paying twice."""
        self._ensure_provider()
        built = [(request, *self._request(request)) for request in requests]
        bodies = {key: self._batch_body(params, request.schema) for request, params, key in built
                  if self._from_cache(key, request.schema) is None}
        if not bodies:
            return {}
        stage = "+".join(sorted({request.stage for request in requests}))
        content_hash = request_set_hash([key for _, _, key in built])
        return self._batch_runner().replies(stage, content_hash, bodies)

    def _batch_body(self, params: dict[str, Any], schema: type[BaseModel] | None) -> dict[str, Any]:
        """The chat-completions body a direct call of `params` sends, for a batch input line."""
        kwargs = self._litellm_kwargs(params, schema)
        body = {name: value for name, value in kwargs.items() if name not in _TRANSPORT_PARAMS}
        body.update(body.pop("extra_body", None) or {})
        body["model"] = batch_model(self.config.model)
        return body

    def _batch_runner(self) -> BatchRunner:
        kwargs = self._litellm_kwargs({}, None)
        transport = {name: kwargs[name] for name in ("api_base", "api_key", "extra_headers") if name in kwargs}
        settings = BatchSettings(self.config.batch_poll_s, self.config.batch_poll_max_s, self.config.batch_timeout_s)
        return BatchRunner(self.config.model, {**transport, "timeout": self._timeout_s()}, settings,
                           self.batch_ledger, lambda exc: _is_retryable(exc, in_process=self._in_process()),
                           self._redact, _sleep, _litellm())

    def _litellm_kwargs(self, params: dict[str, Any], schema: type[BaseModel] | None) -> dict[str, Any]:
        kwargs = {**params, "timeout": self._timeout_s(), "num_retries": 0, "max_retries": 0}
        for name in ("extra_headers", "headers"):
            if isinstance(kwargs.get(name), dict):  # ${VAR} references become their values only here
                kwargs[name] = {header: expand_env(str(value)) for header, value in kwargs[name].items()}
        if self._is_local():
            # One code path with remote servers: llama-server is an OpenAI-compatible api_base. The user's
            # `local/...` string stays in params (and so in the cache key and the records); only the
            # request names the server. A placeholder key: the local server wants none, and a real
            # OPENAI_API_KEY must not be sent to it.
            model, api_base = self._local_route()
            kwargs.update(model=model, api_base=api_base, api_key="no-key-needed")
        elif self.config.api_base:
            kwargs["api_base"] = expand_env(self.config.api_base)
            if self._provider == "openai" and not os.environ.get("OPENAI_API_KEY"):
                # vLLM / Ollama need no key, but the OpenAI SDK refuses to start without one.
                # A placeholder, not a credential; a real key always comes from the environment.
                kwargs["api_key"] = "no-key-needed"
        if schema is not None and self._wants_response_format():
            kwargs["response_format"] = response_format(schema)
        return kwargs

    def _timeout_s(self) -> float:
        if self.config.timeout_s is not None:
            return self.config.timeout_s
        # Measured (quickstart, 2 cores): four 1,200-token analysis prompts in flight on the 1.5B take 100-200 s;
        # at 120 s three of four timed out and were sent again (the server had dropped them half-answered).
        return LOCAL_TIMEOUT_S if self._is_local() else REMOTE_TIMEOUT_S

    def _backoff_s(self, retry: int, exc: Exception) -> float:
        """Exponential backoff with jitter; at least what the server's Retry-After asks for."""
        delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (retry - 1))
        delay += random.uniform(0, delay / 4)
        retry_after = _retry_after_s(exc)
        return max(delay, retry_after) if retry_after is not None else delay

    def _add_usage(self, tally: _Tally, response: Any) -> None:
        usage = getattr(response, "usage", None)
        tally.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
        tally.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
        tally.cost_usd += _cost_usd(response, self.config.model)

    # -- structured-output support ---------------------------------------------------------------

    def _wants_response_format(self) -> bool:
        if self.config.model in _NO_RESPONSE_FORMAT:
            return False
        if self._schema_support is None:
            self._schema_support = (self._provider in _JSON_SCHEMA_PROVIDERS or self._is_local()
                                    or registered_providers().get(self._provider, False)
                                    or _litellm_says_schema_ok(self.config.model))
        return self._schema_support

    def _in_process(self) -> bool:
        return self._provider in _OWN_PROVIDERS or self._provider in registered_providers()

    def _is_local(self) -> bool:
        """`local/...` served by llama-server (unless an in-process provider took the name `local`)."""
        return self._provider == "local" and not self._in_process()

    def _local_route(self) -> tuple[str, str]:
        """(litellm model, api_base) of this config's llama-server: started on first use, restarted if it died."""
        from pada.llm import engine

        server = self._local_server
        if server is None or not server.alive():
            try:
                server = self._local_server = engine.server_for(self.config)
            except engine.EngineError as err:
                raise LLMConfigError(str(err)) from err
        return f"openai/{server.model_name}", server.api_base

    def _drop_response_format(self) -> None:
        with _NO_RESPONSE_FORMAT_LOCK:
            _NO_RESPONSE_FORMAT.add(self.config.model)
        log.info("%s rejected response_format; relying on the schema in the prompt from now on", self.config.model)

    # -- cache, providers, accounting ------------------------------------------------------------

    def _cache_key(self, params: dict[str, Any], request: JSONRequest) -> str:
        """sha256 of everything that shapes the reply. No credentials: params never hold one."""
        return request_key(
            {
                **params,
                "api_base": self.config.api_base,
                "schema": schema_json(request.schema) if request.schema is not None else None,
                "cache_salt": request.cache_salt,
            }
        )

    def _from_cache(self, key: str, schema: type[BaseModel] | None) -> tuple[Any, str] | None:
        """(value, text) for a usable cached reply; a corrupt or no-longer-valid entry is a miss."""
        if self._cache is None:
            return None
        entry = self._cache.get(key)
        if entry is None:
            return None
        text = self._redact(entry["text"])  # an entry written before a key was set or rotated
        if schema is None:
            return (text, text) if text.strip() else None
        try:
            return parse_and_validate(text, schema), text
        except ReplyError:
            return None

    def _ensure_provider(self) -> None:
        """Register our own litellm providers once, on first use, so importing stays cheap."""
        if self._provider_ready:
            return
        with self._provider_lock:
            if not self._provider_ready:
                module_name = _OWN_PROVIDERS.get(self._provider)
                if module_name:
                    _import_provider(module_name, self.config.model).register()
                self._provider_ready = True

    def _redact(self, text: str) -> str:
        return redact(text, secret_values(self.config))

    def _record(self, call: LLMCall) -> None:
        with self._calls_lock:
            self._calls.append(call)
        if self.on_call is None:
            return
        with self._on_call_lock:  # callers' sinks (run store) need not be thread-safe
            try:
                self.on_call(call)
            except Exception:  # accounting must not lose the reply; the call stays in client.calls
                log.exception("on_call failed for a %s call", call.stage)


# -- prompt helpers (public: agents and the dashboard may show them) -----------------------------


def schema_instruction(schema: type[BaseModel]) -> str:
    """The text appended to the prompt so models without response_format support still see the schema."""
    return (
        "Reply with only a JSON object (no prose, no code fence) that matches this JSON schema:\n"
        + schema_json(schema)
    )


@lru_cache(maxsize=256)
def schema_json(schema: type[BaseModel]) -> str:
    """The schema's JSON Schema as compact text; cached because pydantic rebuilds it on every call."""
    return json.dumps(schema.model_json_schema(), ensure_ascii=False)


def with_schema_instruction(messages: list[Message], schema: type[BaseModel] | None) -> list[Message]:
    """A copy of `messages` with the schema instruction appended to the last user (else system) message."""
    prompt = [dict(message) for message in messages]
    if schema is None:
        return prompt
    instruction = schema_instruction(schema)
    for role in ("user", "system"):
        for message in reversed(prompt):
            if message.get("role") == role:
                message["content"] = f"{message.get('content') or ''}\n\n{instruction}".lstrip()
                return prompt
    prompt.append({"role": "user", "content": instruction})
    return prompt


def seed_from(salt: str) -> int:
    """A stable 31-bit seed for a request's cache salt."""
    return int(hashlib.sha256(salt.encode("utf-8")).hexdigest()[:8], 16) & 0x7FFFFFFF


def response_format(schema: type[BaseModel]) -> dict[str, Any]:
    """OpenAI-style json_schema response_format; strict off so optional fields and defaults stay legal."""
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": json.loads(schema_json(schema)), "strict": False},
    }


def _fix_request(error: str) -> str:
    return (
        f"Your reply could not be used ({error}). "
        "Reply again with only the corrected JSON object, matching the schema above."
    )


# -- litellm plumbing ----------------------------------------------------------------------------

_LITELLM: Any = None
_LITELLM_LOCK = threading.Lock()


def _litellm() -> Any:
    """Import and configure litellm once (2–3 s import, so never at module import time)."""
    global _LITELLM
    if _LITELLM is None:
        with _LITELLM_LOCK:
            if _LITELLM is None:
                os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                import litellm

                litellm.drop_params = True  # a provider lacking a param (top_p, response_format) just ignores it
                litellm.suppress_debug_info = True
                litellm.telemetry = False
                for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "httpcore"):
                    logging.getLogger(name).setLevel(logging.WARNING)
                with warnings.catch_warnings():  # build litellm's response types now, minus a pydantic
                    warnings.simplefilter("ignore", UserWarning)  # "ReadOnly qualifier" warning they raise once
                    litellm.ModelResponse()
                _LITELLM = litellm
    return _LITELLM


def _sleep(seconds: float) -> None:
    """Backoff wait; a module function so tests can make it instant."""
    time.sleep(seconds)


def _reply_text(response: Any) -> str:
    try:
        return response.choices[0].message.content or ""
    except (AttributeError, IndexError):
        return ""


def _cost_usd(response: Any, model: str) -> float:
    """litellm's price from its local cost map; 0 for models it does not know (local, self-hosted)."""
    hidden = getattr(response, "_hidden_params", None) or {}
    if "response_cost" in hidden:  # litellm already priced it (None when unmapped): don't price twice
        return float(hidden["response_cost"] or 0.0)
    try:
        return float(_litellm().completion_cost(completion_response=response, model=model) or 0.0)
    except Exception:  # unmapped model: litellm raises; such calls are free or unpriced
        return 0.0


def _litellm_says_schema_ok(model: str) -> bool:
    try:
        return bool(_litellm().supports_response_schema(model=model))
    except Exception:
        return False


def _is_retryable(exc: Exception, in_process: bool = False) -> bool:
    """Transient: rate limit, timeout, connection error, 5xx. Never auth / bad request / missing key.

    litellm reports any plain exception raised inside a CustomLLM as APIConnectionError; for our
    in-process providers (any `register_provider` one) that is a bug or a bad input, not a flaky network.
    """
    litellm = _litellm()
    if _missing_credentials(exc):
        return False
    if in_process and isinstance(exc, litellm.APIConnectionError):
        return False
    transient = (
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.APIConnectionError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
    )
    if isinstance(exc, transient):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status >= 500


def _missing_credentials(exc: Exception) -> bool:
    # The OpenAI SDK's "no key" error reaches us as a litellm InternalServerError; retrying cannot help.
    text = str(exc).lower()
    return "missing credentials" in text or "api_key client option must be set" in text


def _rejects_response_format(exc: Exception) -> bool:
    status = getattr(exc, "status_code", None)
    text = str(exc).lower()
    return status in (400, 422) and ("response_format" in text or "json_schema" in text)


def _retry_after_s(exc: Exception) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header, when the error carries one."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or getattr(
        exc, "litellm_response_headers", None
    )
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms") is not None:
            return min(_RETRY_AFTER_CAP_S, float(headers["retry-after-ms"]) / 1000)
        if headers.get("retry-after") is not None:
            return min(_RETRY_AFTER_CAP_S, float(headers["retry-after"]))
    except (TypeError, ValueError):  # an HTTP-date Retry-After: fall back to our own backoff
        return None
    return None


def _kind(exc: Exception) -> str:
    """The error's class and, when the provider answered, its HTTP status: 'AuthenticationError (HTTP 401)'."""
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__} (HTTP {status})" if isinstance(status, int) else type(exc).__name__


def _message(exc: Exception) -> str:
    """The provider's message on one line, without litellm's repeated "litellm.XError: " prefix."""
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    return re.sub(r"^litellm\.\w+: (\w+: )?", "", text)[:500]


MASK = "***"
_MIN_ENV_SECRET = 8  # shorter values of credential-named variables are flags or placeholders, not keys
_MIN_SECRET = 6  # a header or URL password shorter than this is too weak to be worth masking all over replies
_CREDENTIAL_ENV_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")


def secret_values(config: LLMConfig) -> list[str]:
    """Every credential a request of `config` can carry, longest first, so `redact` can mask it.

    By value, wherever litellm takes it from: environment variables named like credentials
    (OPENAI_API_KEY, ANTHROPIC_API_KEY, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, HF_TOKEN, ...),
    the key litellm itself resolves for the model (OpenAI-compatible providers read their own
    variable), keys set on the litellm module, every header value in `extra_params`
    (`extra_headers` / `headers`, e.g. Authorization, also without its "Bearer " word), and the
    password in the user-info of `api_base` or of any URL in the environment (also as the
    base64 "user:password" that HTTP basic auth sends).
    """
    found: set[str] = set()
    for name, value in os.environ.items():
        if len(value) >= _MIN_ENV_SECRET and any(word in name.upper() for word in _CREDENTIAL_ENV_WORDS):
            found.add(value)
        if "@" in value and "://" in value:
            found.update(_url_secrets(value))
    found.update(_url_secrets(expand_env(config.api_base or "", strict=False)))
    for key in ("extra_headers", "headers"):
        headers = config.extra_params.get(key)
        if isinstance(headers, dict):
            for value in headers.values():
                value = expand_env(str(value), strict=False)
                found.add(value)
                found.update(part for part in value.split()[1:])  # "Bearer <token>", "Basic <b64>"
    found.update(_litellm_keys(config))
    return sorted((v for v in found if len(v) >= _MIN_SECRET), key=len, reverse=True)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_AUTH_SCHEMES = ("bearer", "basic", "token", "apikey")


def expand_env(text: str, strict: bool = True) -> str:
    """`text` with each `${VAR}` replaced by the environment variable's value (what a request sends).

    A run config names credentials by reference (`Authorization: "Bearer ${GATEWAY_TOKEN}"`,
    `http://user:${GATEWAY_PASSWORD}@host/v1`) because it is stored in the run directory; the values
    exist only in the request. `strict`: an unset variable is an error (else left as written)."""
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name in os.environ:
            return os.environ[name]
        if strict:
            raise LLMConfigError(f"environment variable {name} (named as ${{{name}}} in the LLM settings) is not set")
        return match.group(0)
    return _ENV_REF.sub(value, text)


def _refuse_literal_credentials(api_base: str | None, extra_params: Mapping[str, Any]) -> None:
    """A password in `api_base` or a credential header written out in full would be stored with the run's
    config: refuse it and say how to name it by environment variable instead."""
    from urllib.parse import urlsplit

    try:
        password = urlsplit(api_base or "").password
    except ValueError:
        password = None
    if password and _ENV_REF.sub("", password):
        raise LLMConfigError("api_base: a password in the URL would be stored with the run; write it as an "
                             "environment variable reference, e.g. http://user:${GATEWAY_PASSWORD}@host/v1")
    for key in ("extra_headers", "headers"):
        headers = extra_params.get(key)
        for header, value in (headers.items() if isinstance(headers, Mapping) else ()):
            lowered = header.lower()
            if not (lowered in ("authorization", "proxy-authorization", "cookie") or "auth" in lowered
                    or "token" in lowered or _looks_like_credential(header)):
                continue
            literal = [word for word in _ENV_REF.sub("", str(value)).split() if word.lower() not in _AUTH_SCHEMES]
            if literal:
                raise LLMConfigError(
                    f"extra_params.{key}.{header}: a credential written out would be stored with the run; "
                    f"write it as an environment variable reference, e.g. {header}: \"Bearer ${{MY_TOKEN}}\"")


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with each of `secrets` replaced by MASK (longest first, so a key inside a header goes too)."""
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _url_secrets(url: str) -> set[str]:
    """The password of `url`'s user-info: raw, percent-decoded, and as HTTP basic auth's base64."""
    import base64
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return set()
    if not parts.password:
        return set()
    user, password = unquote(parts.username or ""), unquote(parts.password)
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {parts.password, password, f"{user}:{password}", basic}


def _litellm_keys(config: LLMConfig) -> set[str]:
    """Keys litellm would send that no environment name reveals: module settings and its own lookup."""
    if _LITELLM is None:  # litellm not imported yet: nothing was sent, and importing it here costs seconds
        return set()
    found = {value for name, value in vars(_LITELLM).items()
             if isinstance(value, str) and (name == "api_key" or name.endswith("_key"))}
    try:
        _, _, dynamic_key, _ = _LITELLM.get_llm_provider(model=config.model, api_base=config.api_base)
    except Exception:  # an unknown provider: litellm resolves no key for it either
        dynamic_key = None
    if isinstance(dynamic_key, str):
        found.add(dynamic_key)
    return found


def _looks_like_credential(name: str) -> bool:
    lowered = name.lower()
    return "key" in lowered or "secret" in lowered or "password" in lowered or lowered in ("token", "api_token")


def _check_own_provider_exists(provider: str, model: str) -> None:
    import importlib.util

    module_name = _OWN_PROVIDERS.get(provider)
    if not module_name or module_name in sys.modules:
        return
    try:
        found = importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise LLMConfigError(
            f"model {model!r} needs the bundled provider {module_name}, which is not installed in this "
            "checkout; use an API model (e.g. openai/gpt-4o-mini)"
        )


def _import_provider(module_name: str, model: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        raise LLMConfigError(f"model {model!r} needs {module_name}, which failed to import: {err}") from err

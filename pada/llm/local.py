"""Offline LLM provider: `local/<model>` model strings served by transformers through litellm.

With no API key and no network the whole PaDA loop still runs: `register()` adds a
litellm `CustomLLM` named "local", so `litellm.completion(model="local/qwen2.5-coder-0.5b", ...)`
generates with the bundled Qwen2.5-Coder-0.5B (see `pada.bundled`), and
`local/<alias, hub id or path>` with any causal LM transformers can load.

What the provider does for a request:
- renders the messages with the model's chat template (system/user/assistant turns);
- honours `temperature` (0 or absent → greedy; >0 → sampling, seeded by `seed` when given),
  `top_p`, `max_tokens` and `stop`;
- honours `response_format` with a `json_schema` by constrained decoding (outlines-core
  index over the model's vocabulary, cached per schema), so even a weak model returns JSON
  that parses and matches the schema if it finishes within `max_tokens`. A schema the
  index builder can't handle falls back to free generation (the client's parse/repair/retry
  takes over); `PADA_LOCAL_CONSTRAINED=0` or the request param `constrained=False`
  switches constraints off for debugging. Which path ran is logged and put in
  `response._hidden_params["pada_decoding"]`;
- reports usage (prompt/completion tokens) so accounting works; cost is 0.

Each model loads once per process. Requests for the same model that arrive while it is
busy (the LLM client calls from a thread pool) are micro-batched into one `generate`
call: on this CPU 4 sequences in bf16 give ~43 tok/s in aggregate against ~18 for one
(shared/MEASURED.md §3). Per-row sampling and per-row schemas keep a row's output
independent of what it was batched with (up to bf16 padding numerics).

Knobs (environment): PADA_LOCAL_DEVICE (cpu/cuda), PADA_LOCAL_DTYPE (bfloat16/float32/
float16), PADA_LOCAL_MAX_BATCH (default 8), PADA_LOCAL_BATCH_WINDOW_MS (default 50),
PADA_LOCAL_MAX_TOKENS (default when a request gives none, 1024), PADA_LOCAL_CONSTRAINED,
PADA_LOCAL_THREADS (torch threads for the whole process; unset leaves torch's default).

This module is a litellm plugin, so it imports litellm at the top (it is only imported
lazily, by the LLM client, once a `local/` model is used); torch, transformers and
outlines load on first use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import litellm
from litellm import CustomLLM, ModelResponse, Usage
from litellm.llms.custom_llm import CustomLLMError

log = logging.getLogger(__name__)

PROVIDER = "local"
DEFAULT_MAX_TOKENS = 1024  # a request without max_tokens must still end; agents' JSON fits well within this
MAX_BATCH = 8  # MEASURED §2: bs16/bs32 gain nothing over ~bs8-16 on 2 cores; GPUs set PADA_LOCAL_MAX_BATCH higher
# How long a free model waits for concurrent requests to join its batch: litellm's own request
# handling takes tens of ms on a busy CPU, and a request that misses a batch waits for all of it.
BATCH_WINDOW_MS = 50.0
MAX_PREPARE_WAIT_S = 0.5  # ...and at most this long for requests already inside completion() (rendering)
# Constrained JSON may put at most one space between tokens: a weak model otherwise can
# emit whitespace until max_tokens and never close the object.
JSON_WHITESPACE = r"[ ]?"


# ---------------------------------------------------------------- registration

_register_lock = threading.Lock()


def register() -> None:
    """Add the "local" provider to litellm (constrained JSON: it reads response_format); idempotent."""
    from pada.llm.client import register_provider

    with _register_lock:
        if any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
            return
        register_provider(PROVIDER, LocalLLM(), json_schema=True)


class LocalLLM(CustomLLM):
    """litellm handler for `local/<model>`: parses the OpenAI-style request and hands it to `LocalModel`."""

    def completion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                   model_response: ModelResponse, print_verbose, encoding, api_key, logging_obj,
                   optional_params: dict, acompletion=None, litellm_params=None, logger_fn=None,
                   headers=None, timeout=None, client=None) -> ModelResponse:
        try:
            local = get_local_model(model)
            request = local.prepare(messages, optional_params or {})
            local.submit(request)
        except CustomLLMError:
            raise
        except Exception as error:  # one exception family for the client: litellm maps CustomLLMError
            raise CustomLLMError(status_code=500, message=f"local/{model}: {type(error).__name__}: {error}") from error
        return _fill_response(model_response, f"{PROVIDER}/{model}", request)

    async def acompletion(self, *args, **kwargs) -> ModelResponse:
        # Generation is blocking CPU/GPU work: run it in a thread so the event loop stays free.
        return await asyncio.to_thread(self.completion, *args, **kwargs)


def _fill_response(model_response: ModelResponse, model: str, request: _Request) -> ModelResponse:
    model_response.choices[0].message.content = request.text
    model_response.choices[0].finish_reason = request.finish_reason
    model_response.model = model
    model_response.created = int(time.time())
    setattr(model_response, "usage", Usage(prompt_tokens=request.prompt_tokens,
                                           completion_tokens=request.completion_tokens,
                                           total_tokens=request.prompt_tokens + request.completion_tokens))
    model_response._hidden_params["pada_decoding"] = request.decoding
    model_response._hidden_params["response_cost"] = 0.0
    return model_response


# ---------------------------------------------------------------- model cache

_models: dict[str, LocalModel] = {}
_models_lock = threading.Lock()


def get_local_model(name: str) -> LocalModel:
    """The loaded model for `name` (alias, hub id or path); loads it on first use, once per process."""
    with _models_lock:
        if name not in _models:
            _models[name] = LocalModel(name)
            _register_zero_cost(name)
        return _models[name]


def _register_zero_cost(name: str) -> None:
    """Tell litellm's cost map the model is free, so `litellm.completion_cost` gives 0 instead of raising."""
    litellm.register_model({f"{PROVIDER}/{name}": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                                                   "litellm_provider": PROVIDER, "mode": "chat"}})


def resolve_model_path(name: str) -> str:
    """Alias → converted bundled checkpoint (pada.bundled); a path or hub id passes through."""
    try:
        from pada.bundled import resolve_model
    except ImportError:  # bundled models not available in this checkout: names are paths or hub ids
        return name
    return resolve_model(name)


def pick_device_and_dtype() -> tuple[str, Any]:
    """cuda if present; on CPU bf16 only where the CPU has native bf16 (MEASURED: ~2x fp32), else fp32."""
    import torch

    device = os.environ.get("PADA_LOCAL_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    wanted = os.environ.get("PADA_LOCAL_DTYPE")
    if wanted:
        return device, getattr(torch, wanted)
    if device.startswith("cuda"):
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.bfloat16 if _cpu_has_native_bf16() else torch.float32


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# ---------------------------------------------------------------- one request

@dataclass
class _Request:
    """One chat completion: its inputs, then (once `done` is set) its outputs."""

    prompt: str
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    index: Any = None  # outlines_core Index when decoding is constrained
    decoding: str = "unconstrained"
    # outputs
    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _message_text(content: Any) -> str:
    """OpenAI content may be a list of parts; the local models read text only."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _json_schema_of(response_format: Any) -> dict | None:
    """The JSON schema a response_format asks for, or None for free text."""
    if response_format is None:
        return None
    if isinstance(response_format, type) and hasattr(response_format, "model_json_schema"):
        return response_format.model_json_schema()  # a pydantic class passed straight through
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        return spec.get("schema") or spec.get("schema_") or None
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return None


def _bound_integers(schema: Any) -> Any:
    """Copy of the schema where integers with both `minimum` and `maximum` get outlines-core's `maxDigits`.

    outlines-core ignores minimum/maximum, so a weak model can otherwise repeat digits
    ("-7777...") until max_tokens; the digit bound keeps the JSON short and complete.
    """
    if isinstance(schema, list):
        return [_bound_integers(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    bounded = {key: _bound_integers(value) for key, value in schema.items()}
    low, high = schema.get("minimum"), schema.get("maximum")
    if schema.get("type") == "integer" and isinstance(low, int) and isinstance(high, int) and "maxDigits" not in schema:
        bounded["maxDigits"] = max(len(str(abs(low))), len(str(abs(high))))
    return bounded


def _constrained_enabled(optional_params: dict) -> bool:
    if "constrained" in optional_params:
        return bool(optional_params["constrained"])
    return os.environ.get("PADA_LOCAL_CONSTRAINED", "1").strip().lower() not in {"0", "false", "no", "off"}


# ---------------------------------------------------------------- the model

class LocalModel:
    """One causal LM + tokenizer, its schema-index cache, and a micro-batching request queue."""

    def __init__(self, name: str):
        self.name = name
        started = time.perf_counter()
        self.model, self.tokenizer = _load_model(resolve_model_path(name))
        self.load_seconds = time.perf_counter() - started
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        log.info("local LLM %s loaded in %.1fs on %s as %s", name, self.load_seconds,
                 self.model.device, self.model.dtype)
        self._pending: list[_Request] = []
        self._pending_lock = threading.Lock()
        self._preparing = 0  # requests being rendered right now: a batch about to start waits for them
        self._generate_lock = threading.Lock()  # one generate() at a time: two would only fight over the cores
        self._tokenizer_lock = threading.RLock()  # fast tokenizers raise "Already borrowed" across threads
        self._schema_lock = threading.Lock()
        self._indexes: dict[str, Any] = {}
        self._index_errors: dict[str, str] = {}
        self._vocabulary = None
        self.max_batch = int(os.environ.get("PADA_LOCAL_MAX_BATCH", MAX_BATCH))
        self.batch_window_s = float(os.environ.get("PADA_LOCAL_BATCH_WINDOW_MS", BATCH_WINDOW_MS)) / 1000

    # ---- request building

    def prepare(self, messages: list, optional_params: dict) -> _Request:
        """`build_request`, counted so a batch about to start can wait for requests still being rendered."""
        with self._pending_lock:
            self._preparing += 1
        try:
            return self.build_request(messages, optional_params)
        finally:
            with self._pending_lock:
                self._preparing -= 1

    def build_request(self, messages: list, optional_params: dict) -> _Request:
        """OpenAI-style messages + params → a `_Request` (prompt rendered, schema index looked up)."""
        temperature = float(optional_params.get("temperature") or 0.0)
        max_tokens = optional_params.get("max_tokens") or optional_params.get("max_completion_tokens")
        stop = optional_params.get("stop") or []
        request = _Request(
            prompt=self.render_prompt(messages),
            max_new_tokens=int(max_tokens or os.environ.get("PADA_LOCAL_MAX_TOKENS", DEFAULT_MAX_TOKENS)),
            temperature=max(temperature, 0.0),
            top_p=float(optional_params.get("top_p") or 1.0),
            seed=optional_params.get("seed"),
            stop=[stop] if isinstance(stop, str) else list(stop),
        )
        schema = _json_schema_of(optional_params.get("response_format"))
        if schema is not None:
            if _constrained_enabled(optional_params):
                request.index, request.decoding = self.schema_index(schema)
            else:
                request.decoding = "unconstrained (constrained decoding switched off)"
        log.info("local/%s: %s decoding", self.name, request.decoding)
        return request

    def render_prompt(self, messages: list) -> str:
        """Chat template text for the turns; an assistant turn last is continued, not answered."""
        turns = [{"role": m.get("role", "user"), "content": _message_text(m.get("content"))} for m in messages]
        continue_last = bool(turns) and turns[-1]["role"] == "assistant"
        if not getattr(self.tokenizer, "chat_template", None):
            text = "".join(f"{t['role']}: {t['content']}\n" for t in turns)
            return text if continue_last else text + "assistant: "
        try:
            return self._apply_template(turns, continue_last)
        except Exception as error:  # e.g. a template without a system role: fold it into the first user turn
            if not turns or turns[0]["role"] != "system" or len(turns) < 2:
                raise
            log.info("chat template rejected a system turn (%s); merging it into the user turn", error)
            merged = [{"role": turns[1]["role"], "content": turns[0]["content"] + "\n\n" + turns[1]["content"]}]
            return self._apply_template(merged + turns[2:], continue_last)

    def _apply_template(self, turns: list[dict], continue_last: bool) -> str:
        return self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=not continue_last,
                                                  continue_final_message=continue_last)

    def schema_index(self, schema: dict) -> tuple[Any, str]:
        """(outlines_core Index, decoding label) for a JSON schema; (None, reason) if it can't be compiled.

        Building an index walks the whole vocabulary (seconds for a 150k vocab), so each
        schema is compiled once per model; failures are remembered too.
        """
        # Not sort_keys: outlines emits properties in schema order, and agents rely on that order
        # (e.g. a reason field before the verdict it justifies).
        key = json.dumps(_bound_integers(schema))
        with self._schema_lock:
            if key not in self._indexes and key not in self._index_errors:
                started = time.perf_counter()
                try:
                    self._indexes[key] = self._build_index(key)
                    log.info("local/%s: built JSON-schema index in %.1fs", self.name, time.perf_counter() - started)
                except Exception as error:  # unsupported schema feature: free generation + client-side repair
                    self._index_errors[key] = f"{type(error).__name__}: {error}"[:300]
                    log.warning("local/%s: constrained decoding unavailable for this schema (%s); generating freely",
                                self.name, self._index_errors[key])
            if key in self._indexes:
                return self._indexes[key], "constrained (outlines json_schema)"
            return None, f"unconstrained (schema not supported by outlines: {self._index_errors[key]})"

    def _build_index(self, schema_json: str) -> Any:
        from outlines_core import Index
        from outlines_core.json_schema import build_regex_from_schema

        regex = build_regex_from_schema(schema_json, JSON_WHITESPACE)
        return Index(regex, self._outlines_vocabulary())

    def _outlines_vocabulary(self) -> Any:
        """The vocabulary outlines-core indexes, minus added/special tokens (chat markers, extra EOS
        tokens): a constrained JSON string must never contain them, or generation would stop mid-object."""
        if self._vocabulary is None:
            from outlines.backends.outlines_core import OutlinesCoreBackend
            from outlines.models.transformers import TransformerTokenizer

            with self._tokenizer_lock:
                wrapped = TransformerTokenizer(self.tokenizer)
                added = set(self.tokenizer.added_tokens_decoder) | set(self.tokenizer.all_special_ids)
                eos_id = self.tokenizer.eos_token_id
                vocab = {token: i for token, i in self.tokenizer.get_vocab().items() if i not in added or i == eos_id}
                self._vocabulary = OutlinesCoreBackend.create_outlines_core_vocabulary(
                    vocab, eos_id, self.tokenizer.eos_token, wrapped.convert_token_to_string)
        return self._vocabulary

    # ---- batching

    def submit(self, request: _Request) -> _Request:
        """Queue the request and block until it is answered.

        No background thread: whichever waiting caller gets the model next waits a few ms
        for late arrivals, then runs everything queued (up to max_batch) as one batch.
        """
        with self._pending_lock:
            self._pending.append(request)
        while not request.done.is_set():
            with self._generate_lock:
                if request.done.is_set():
                    break
                self._wait_for_joiners()
                with self._pending_lock:
                    batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
                self._run_batch(batch)
        if request.error is not None:
            raise request.error
        return request

    def _wait_for_joiners(self) -> None:
        time.sleep(self.batch_window_s)
        deadline = time.monotonic() + MAX_PREPARE_WAIT_S
        while self._preparing and len(self._pending) < self.max_batch and time.monotonic() < deadline:
            time.sleep(0.005)

    def _run_batch(self, batch: list[_Request]) -> None:
        if not batch:
            return
        try:
            self.generate_batch(batch)
        except BaseException as error:  # every caller in the batch sees the failure, not just the runner
            for request in batch:
                request.error = error
        finally:
            for request in batch:
                request.done.set()

    # ---- generation

    def generate_batch(self, batch: list[_Request]) -> None:
        """Run one left-padded `generate` over the batch and fill each request's outputs."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        with self._tokenizer_lock:
            prompts = [self.tokenizer(r.prompt, add_special_tokens=False)["input_ids"] for r in batch]
        for request, ids in zip(batch, prompts):
            request.prompt_tokens = len(ids)
            if self.context_length:  # a request may not run past the model's context
                request.max_new_tokens = max(1, min(request.max_new_tokens, self.context_length - len(ids)))
        input_ids, attention_mask = _left_pad(prompts, self.tokenizer.pad_token_id, self.model.device)
        prompt_len = input_ids.shape[1]
        stops = _RowStops(prompt_len, batch, self._decode)
        config = GenerationConfig(max_new_tokens=max(r.max_new_tokens for r in batch), do_sample=False,
                                  num_beams=1, repetition_penalty=1.0, pad_token_id=self.tokenizer.pad_token_id,
                                  eos_token_id=sorted(self.eos_ids))
        # Row processors run in order: constraint mask first, then per-row sampling (greedy picks its choice).
        processors = LogitsProcessorList([_RowConstraints(prompt_len, batch), _RowSampler(batch, self.model.device)])
        with torch.inference_mode():
            output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                                         logits_processor=processors, stopping_criteria=StoppingCriteriaList([stops]))
        for row, request in enumerate(batch):
            self._finish(request, output[row, prompt_len:].tolist(), stops.stopped_at[row])

    def _finish(self, request: _Request, generated: list[int], stopped_at: int | None) -> None:
        """Cut a row at its EOS / stop criterion / stop string and record text, reason and token count."""
        length = stopped_at if stopped_at is not None else len(generated)
        hit_eos = False
        for position, token in enumerate(generated[:length]):
            if token in self.eos_ids:
                length, hit_eos = position + 1, True
                break
        text = self._decode(generated[:length])
        cut = min((text.find(s) for s in request.stop if s and s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
        request.text = text
        request.completion_tokens = length
        request.finish_reason = "stop" if hit_eos or cut >= 0 else "length"

    def _decode(self, ids: list[int]) -> str:
        with self._tokenizer_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True)


# ---------------------------------------------------------------- loading

def _load_model(path: str) -> tuple[Any, Any]:
    """(model, tokenizer) on the chosen device, in eval mode, with a pad token for left padding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if os.environ.get("PADA_LOCAL_THREADS"):
        # Process-wide. On a CPU shared with other heavy processes, 1 thread avoids OpenMP
        # threads spin-waiting on each other (measured 6x faster there than 2 threads).
        torch.set_num_threads(int(os.environ["PADA_LOCAL_THREADS"]))
    device, dtype = pick_device_and_dtype()
    location, extra = path, {}
    if path.endswith(".gguf") and Path(path).is_file():  # transformers dequantises GGUF (slow: prefer pada.bundled)
        location, extra = str(Path(path).parent), {"gguf_file": Path(path).name}
    tokenizer = AutoTokenizer.from_pretrained(location, **extra)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **extra).to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token that ends a turn: the tokenizer's EOS plus the generation config's (Qwen has two)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _left_pad(prompts: list[list[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    import torch

    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        if ids:
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids):] = 1
    return input_ids.to(device), attention_mask.to(device)


# ---------------------------------------------------------------- per-row generation controls

class _RowConstraints:
    """Logits processor: masks each constrained row to the tokens its JSON-schema guide allows.

    Unlike outlines' own processor (one schema for the whole batch) every row has its own
    guide or none, so requests with different schemas share a batch. The bitmask is
    unpacked with numpy (outlines' kernel goes through torch.compile, which costs a C++
    compile on first use).
    """

    def __init__(self, prompt_len: int, batch: list[_Request]):
        from outlines_core import Guide

        self.prompt_len = prompt_len
        self.guides = [Guide(r.index) if r.index is not None else None for r in batch]

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] > self.prompt_len:
            self._advance(input_ids[:, -1].tolist())
        for row, guide in enumerate(self.guides):
            if guide is not None:
                scores[row].masked_fill_(~self._allowed(guide, scores.shape[1], scores.device), float("-inf"))
        return scores

    def _advance(self, last_tokens: list[int]) -> None:
        for row, guide in enumerate(self.guides):
            if guide is None:
                continue
            if guide.is_finished() or not guide.accepts_tokens([last_tokens[row]]):
                self.guides[row] = None  # row already ended (EOS, stop, padding): nothing left to constrain
            else:
                guide.advance(token_id=last_tokens[row], return_tokens=False)

    @staticmethod
    def _allowed(guide, vocab_size: int, device):
        """Boolean mask of the tokens the guide allows next (unpacked from outlines-core's int32 bitmask)."""
        import numpy as np
        import torch

        words = np.zeros((vocab_size + 31) // 32, dtype=np.int32)
        guide.write_mask_into(words.ctypes.data, words.size, words.itemsize)
        # Little-endian words + little bit order: bit i of word w is token 32*w + i.
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:vocab_size]
        return torch.from_numpy(bits.astype(bool)).to(device)


class _RowSampler:
    """Logits processor: rows with temperature > 0 draw their token here (own generator, so a seeded
    request gives the same text whatever it is batched with) and leave only that token for the greedy
    step; temperature-0 rows are left for plain greedy decoding."""

    def __init__(self, batch: list[_Request], device):
        import torch

        self.settings = []
        for request in batch:
            generator = None
            if request.temperature > 0 and request.seed is not None:
                generator = torch.Generator(device=device).manual_seed(int(request.seed))
            self.settings.append((request.temperature, request.top_p, generator))

    def __call__(self, input_ids, scores):
        import torch

        for row, (temperature, top_p, generator) in enumerate(self.settings):
            if temperature <= 0 or scores[row].max() == float("-inf"):  # greedy row, or nothing allowed
                continue
            probs = torch.softmax(scores[row].float() / temperature, dim=-1)
            if top_p < 1.0:
                probs = _top_p_filter(probs, top_p)
            choice = torch.multinomial(probs, 1, generator=generator)
            scores[row].fill_(float("-inf"))
            scores[row, choice] = 0.0
        return scores


def _top_p_filter(probs, top_p: float):
    """Keep the smallest set of most likely tokens whose mass reaches top_p, renormalised."""
    import torch

    sorted_probs, order = torch.sort(probs, descending=True)
    outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > top_p
    sorted_probs[outside] = 0.0
    return torch.zeros_like(probs).scatter(0, order, sorted_probs) / sorted_probs.sum()


class _RowStops:
    """Stopping criterion with per-row `max_tokens` and stop strings; remembers where each row stopped."""

    def __init__(self, prompt_len: int, batch: list[_Request], decode):
        self.prompt_len = prompt_len
        self.limits = [r.max_new_tokens for r in batch]
        self.stops = [[s for s in r.stop if s] for r in batch]
        self.decode = decode
        self.stopped_at: list[int | None] = [None] * len(batch)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        generated = input_ids.shape[1] - self.prompt_len
        for row in range(len(self.limits)):
            if self.stopped_at[row] is None and (generated >= self.limits[row] or self._hit_stop(row, input_ids)):
                self.stopped_at[row] = generated
        return torch.tensor([at is not None for at in self.stopped_at], device=input_ids.device)

    def _hit_stop(self, row: int, input_ids) -> bool:
        if not self.stops[row]:
            return False
        # A stop string of n characters spans at most n tokens (+1 for a partial first token).
        tail = max(len(s) for s in self.stops[row]) + 1
        start = max(self.prompt_len, input_ids.shape[1] - tail)
        text = self.decode(input_ids[row, start:].tolist())
        return any(s in text for s in self.stops[row])

"""Where the SLM's replies come from during evaluation: transformers in this process, or a vLLM server.

    with open_backend(slm_config, adapter_dir) as backend:      # slm.backend: hf | vllm
        replies = backend.replies(conversations, max_new_tokens)  # greedy, in the conversations' order

Both render prompts with `pada.slm.train.render` (the training chat template, with its pinned date), decode
greedily and stop at the end-of-turn token, so they reply alike to the same adapter (tests/test_slm_backends.py
checks it against an imitation of vLLM's server; a real vLLM server is not tested here, see the README).

vLLM: the server must run the same base model with runtime LoRA loading on
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve MODEL --enable-lora --max-lora-rank 32
(the default rank limit, 16, refuses the paper's r = 32), and read the adapter directory at the same path.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Protocol

from pada.errors import PadaError
from pada.records import Message
from pada.slm.generate import ProgressFn

BACKENDS = ("hf", "vllm")
AUTO = "auto"
CPU_EVAL_BATCH_SIZE = 16  # 16-32 measured best on the 2-core CPU; larger only adds padding
# On a CPU a batch also stops at this many cache positions (rows x (prompt + new tokens)): 500 SQuAD test questions
# at 32 rows, 2 cores: 163 s and 1.7 GB peak with it, 211 s and 3.4 GB without (the same replies).
CPU_EVAL_BATCH_TOKENS = 4096
VLLM_REQUESTS_IN_FLIGHT = 64  # 'auto' for vllm: the server batches what is in flight itself


class SLMBackend(Protocol):
    def replies(self, conversations: Sequence[Sequence[Message]], max_new_tokens: int,
                on_progress: ProgressFn | None = None) -> list[str]:
        """Greedy replies (new text only, special tokens stripped), one per conversation, in order."""

    def close(self) -> None:
        """Free the model (hf) or unload the adapter from the server (vllm)."""


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_backend(slm, adapter_dir: str | Path | None, adapter_name: str | None = None,
                 dtype: str | None = None) -> SLMBackend:
    """The backend `slm` (an SLMConfig: model, backend, api_base, eval_batch_size) names, with the adapter loaded."""
    if slm.backend == "vllm":
        in_flight = VLLM_REQUESTS_IN_FLIGHT if slm.eval_batch_size == AUTO else int(slm.eval_batch_size)
        return VLLMBackend(slm.api_base, slm.model, adapter_dir, adapter_name=adapter_name, concurrency=in_flight)
    if slm.backend == "hf":
        return HFBackend(slm.model, adapter_dir, dtype=dtype, batch_size=slm.eval_batch_size)
    raise PadaError(f"unknown SLM backend {slm.backend!r}: use one of {', '.join(BACKENDS)}")


# ---------------------------------------------------------------- in process

class HFBackend(_Closing):
    """transformers in this process: `load_for_inference` + the batched greedy `generate`."""

    def __init__(self, base_model: str | Path | None, adapter_dir: str | Path | None = None,
                 device: str | None = None, dtype: str | None = None, batch_size: int | str = AUTO):
        from pada.slm.generate import load_for_inference

        self.model, self.tokenizer = load_for_inference(base_model, adapter_dir, device=device, dtype=dtype)
        self.batch_size = eval_batch_size(batch_size, self.model)
        self.max_batch_tokens = None if self.model.device.type == "cuda" else CPU_EVAL_BATCH_TOKENS

    def replies(self, conversations, max_new_tokens, on_progress=None) -> list[str]:
        from pada.slm.generate import generate

        return generate(self.model, self.tokenizer, conversations, max_new_tokens=max_new_tokens,
                        batch_size=self.batch_size, on_progress=on_progress, max_batch_tokens=self.max_batch_tokens)

    def close(self) -> None:
        self.model = None  # the caller may load the next iteration's model right after


def eval_batch_size(value: int | str, model) -> int:
    """'auto' → 16 on a CPU; on a GPU 256 prompts for models under 0.5 B parameters, 128 up to 2 B, else 64.

    GPU sizes are estimates (KV cache of a 1 B Llama at ~1k tokens x 128 rows is a few GB), not measured here.
    """
    if value != AUTO:
        return int(value)
    if model.device.type != "cuda":
        return CPU_EVAL_BATCH_SIZE
    params = sum(p.numel() for p in model.parameters())
    return 256 if params < 5e8 else 128 if params <= 2e9 else 64


# ---------------------------------------------------------------- vLLM server

class VLLMBackend(_Closing):
    """A vLLM OpenAI-compatible server: the adapter loaded at runtime, token-id prompts, many requests in flight.

    api_base: the server's OpenAI base, e.g. http://localhost:8000/v1 ("/v1" is added when missing).
    base_model: the model the server serves, as this machine names it (its tokenizer renders the prompts).
    Without an adapter the server's first served model answers.
    """

    def __init__(self, api_base: str, base_model: str | Path | None, adapter_dir: str | Path | None = None,
                 adapter_name: str | None = None, concurrency: int = VLLM_REQUESTS_IN_FLIGHT, timeout: float = 600.0):
        import httpx
        from transformers import AutoTokenizer

        from pada.bundled import resolve_model

        if not api_base:
            raise PadaError("the vllm backend needs slm.api_base, e.g. http://localhost:8000/v1")
        self.api_base = _v1_base(api_base)
        model_path = resolve_model(base_model)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.stop_ids = sorted(_stop_ids(self.tokenizer, model_path))
        self.concurrency = max(1, concurrency)
        self.client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=self.concurrency))
        self.adapter_name: str | None = None
        try:
            if adapter_dir is None:
                self.model_name = self._served_model()
            else:
                self.model_name = adapter_name or _adapter_name(Path(adapter_dir))
                self._load_adapter(Path(adapter_dir).resolve())
                self.adapter_name = self.model_name
        except BaseException:  # nothing is loaded on the server; only the connections are left to close
            self.client.close()
            raise

    def replies(self, conversations, max_new_tokens, on_progress=None) -> list[str]:
        from pada.slm.generate import prompt_ids

        prompts = [prompt_ids(self.tokenizer, conversation) for conversation in conversations]
        replies: list[str] = [""] * len(prompts)
        done, lock = [0], threading.Lock()

        def one(index: int) -> None:
            replies[index] = self._complete(prompts[index], max_new_tokens)
            with lock:
                done[0] += 1
                if on_progress:
                    on_progress(done[0], len(prompts))

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="vllm") as pool:
            futures = [pool.submit(one, index) for index in range(len(prompts))]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in finished if f.exception() is not None), None)
            if failed is not None:
                for future in futures:
                    future.cancel()
                raise failed.exception()
        return replies

    def close(self) -> None:
        """Unload the adapter (also after an error); a failure to unload is reported, not raised."""
        try:
            if self.adapter_name is not None:
                response = self._post("/unload_lora_adapter", {"lora_name": self.adapter_name})
                if response.status_code != 200:
                    print(f"warning: vLLM at {self.api_base} did not unload adapter {self.adapter_name!r}: "
                          f"{_error_message(response)}", file=sys.stderr)
                self.adapter_name = None
        except PadaError as err:
            print(f"warning: {err}", file=sys.stderr)
        finally:
            self.client.close()

    # ------------------------------------------------------------ requests

    def _complete(self, prompt: list[int], max_new_tokens: int) -> str:
        payload = {"model": self.model_name, "prompt": prompt, "max_tokens": max_new_tokens, "temperature": 0,
                   "stop_token_ids": self.stop_ids, "skip_special_tokens": True}
        response = self._post("/completions", payload)
        if response.status_code != 200:
            raise PadaError(f"vLLM at {self.api_base} refused a completion ({response.status_code}): "
                            f"{_error_message(response)}")
        return response.json()["choices"][0]["text"]

    def _load_adapter(self, adapter_dir: Path) -> None:
        if not (adapter_dir / "adapter_config.json").is_file():
            raise PadaError(f"{adapter_dir} is not a LoRA adapter directory (no adapter_config.json)")
        payload = {"lora_name": self.model_name, "lora_path": str(adapter_dir)}
        response = self._post("/load_lora_adapter", payload)
        if response.status_code == 400 and "already" in _error_message(response).lower():
            # left by an earlier, interrupted evaluation; its files may have changed since
            self._post("/unload_lora_adapter", {"lora_name": self.model_name})
            response = self._post("/load_lora_adapter", payload)
        if response.status_code == 200:
            return
        message = _error_message(response)
        if response.status_code == 404 and "lora" not in message.lower():
            raise PadaError(f"vLLM at {self.api_base} has no {self.api_base}/load_lora_adapter: start it with "
                            "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora --max-lora-rank 32")
        if "rank" in message.lower():
            rank = json.loads((adapter_dir / "adapter_config.json").read_text()).get("r")
            raise PadaError(f"vLLM at {self.api_base} refused the adapter (LoRA rank {rank}): {message}; "
                            f"start the server with --max-lora-rank {rank} (or more)")
        where = "; the server reads the adapter at this path: share the runs directory with it at the same path" \
            if "no adapter found" in message.lower() else ""
        raise PadaError(f"vLLM at {self.api_base} could not load adapter {adapter_dir} "
                        f"({response.status_code}): {message}{where}")

    def _served_model(self) -> str:
        response = self._request("GET", "/models")
        if response.status_code != 200 or not response.json().get("data"):
            raise PadaError(f"vLLM at {self.api_base} lists no model ({response.status_code}): "
                            f"{_error_message(response)}")
        return response.json()["data"][0]["id"]

    def _post(self, path: str, payload: dict):
        return self._request("POST", path, json=payload)

    def _request(self, method: str, path: str, **kwargs):
        import httpx

        try:
            return self.client.request(method, self.api_base + path, **kwargs)
        except httpx.TransportError as err:
            raise _unreachable(self.api_base, err) from None


def check_vllm_server(api_base: str, timeout: float = 10.0) -> None:
    """Raise PadaError (one line) unless a server answers GET {api_base}/models: checked before a run starts, so an
    unreachable server is found before the fine-tune, not at the first evaluation after it."""
    import httpx

    base = _v1_base(api_base)
    try:
        response = httpx.get(base + "/models", timeout=timeout)
    except httpx.TransportError as err:
        raise _unreachable(base, err) from None
    if response.status_code != 200:
        raise PadaError(f"the server at {base} answered GET /models with {response.status_code}: "
                        f"{_error_message(response)}")


def _v1_base(api_base: str) -> str:
    """The server's OpenAI base URL, ending in /v1 ("/v1" added when missing)."""
    base = api_base.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def _unreachable(base: str, err: Exception) -> PadaError:
    return PadaError(f"vLLM server at {base} is unreachable ({type(err).__name__}: {err}); start it with "
                     "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve MODEL --enable-lora --max-lora-rank 32, "
                     "or set slm.api_base")


def _error_message(response) -> str:
    """The message of a vLLM/OpenAI error body ({"error": {"message"}} or the older flat {"message"})."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner.get("detail") or body)
    return str(body)[:500]


def _adapter_name(adapter_dir: Path) -> str:
    """A server-side name for the adapter: stable for one directory, distinct for two."""
    import hashlib

    digest = hashlib.sha1(str(adapter_dir.resolve()).encode()).hexdigest()[:10]
    return f"pada-{digest}"


def _stop_ids(tokenizer, model_path: str) -> set[int]:
    from transformers import GenerationConfig

    from pada.slm.generate import stop_token_ids

    try:
        generation_config = GenerationConfig.from_pretrained(model_path)
    except OSError:  # a model without generation_config.json: the tokenizer's eos alone
        generation_config = None
    return stop_token_ids(tokenizer, generation_config)

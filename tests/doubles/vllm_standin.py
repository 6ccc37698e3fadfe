"""A STAND-IN for a vLLM OpenAI-compatible server, for tests: it is not vLLM and shares no code with it.

It implements the endpoints PaDA's vLLM backend uses, with the request and response shapes vLLM documents
(docs.vllm.ai, "LoRA Adapters" / "OpenAI-Compatible Server"), for a server started as
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve MODEL --enable-lora --max-lora-rank R --max-model-len L

    GET  /v1/models                 {"object": "list", "data": [{"id", "object": "model", "root", "parent"}...]}
    POST /v1/load_lora_adapter      {"lora_name", "lora_path"} -> 200 text "Success: LoRA adapter '...' added
                                    successfully."; 400 when a field is missing, the name is taken or the rank
                                    exceeds max_lora_rank; 404 when the path holds no adapter
    POST /v1/unload_lora_adapter    {"lora_name"} -> 200 text; 404 for a name not loaded
    POST /v1/completions            {"model", "prompt" (a list of token ids, or a list of such lists), "max_tokens",
                                    "temperature", "stop_token_ids", "skip_special_tokens"} -> {"id", "object":
                                    "text_completion", "created", "model", "choices": [{"index", "text", "logprobs",
                                    "finish_reason", "stop_reason"}], "usage"}; 404 for an unknown model, 400 when
                                    prompt + max_tokens exceed max_model_len
Errors are vLLM's ErrorResponse: {"error": {"message", "type", "param", "code"}} (vLLM before ~0.10 sent the same
fields flat; the backend reads both). Messages are vLLM's (vllm/entrypoints/openai/serving_models.py and the LoRA
manager's rank check).

Replies are real greedy outputs: the base model with the adapter merged (float32, in this process), decoded with
transformers' own `model.generate(do_sample=False)`, not PaDA's generation code. It keeps a log of requests and
the most requests it had in flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class VLLMStandIn:
    """Serve `model_dir` as `served_name` on 127.0.0.1 (a free port) until `close()`; use as a context manager."""

    def __init__(self, model_dir: str | Path, served_name: str = "base", max_lora_rank: int = 16,
                 max_model_len: int = 2048, runtime_lora_updating: bool = True):
        from transformers import AutoTokenizer

        self.model_dir, self.served_name = str(model_dir), served_name
        self.max_lora_rank, self.max_model_len = max_lora_rank, max_model_len
        self.runtime_lora_updating = runtime_lora_updating
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.adapters: dict[str, str] = {}  # lora_name -> lora_path
        self.requests: list[tuple[str, dict]] = []  # (path, body) of every POST, in arrival order
        self.in_flight = self.max_in_flight = 0
        self._models: dict[str | None, object] = {}  # None: the base model
        self._lock = threading.Lock()  # state
        self._model_lock = threading.Lock()  # one generation at a time (torch modules are not re-entrant)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.api_base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------ endpoints

    def models(self) -> tuple[int, dict]:
        data = [{"id": self.served_name, "object": "model", "root": self.model_dir, "parent": None}]
        data += [{"id": name, "object": "model", "root": path, "parent": self.served_name}
                 for name, path in self.adapters.items()]
        return 200, {"object": "list", "data": data}

    def load_lora_adapter(self, body: dict) -> tuple[int, dict | str]:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        with self._lock:
            if name in self.adapters:
                return _error(400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput")
        config_file = Path(path) / "adapter_config.json"
        if not config_file.is_file():
            return _error(404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError")
        rank = json.loads(config_file.read_text())["r"]
        if rank > self.max_lora_rank:
            return _error(400, f"LoRA rank {rank} is greater than max_lora_rank {self.max_lora_rank}.")
        with self._lock:
            self.adapters[name] = path
        return 200, f"Success: LoRA adapter '{name}' added successfully."

    def unload_lora_adapter(self, body: dict) -> tuple[int, dict | str]:
        name = body.get("lora_name")
        with self._lock:
            if name not in self.adapters:
                return _error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
            del self.adapters[name]
            self._models.pop(name, None)
        return 200, f"Success: LoRA adapter '{name}' removed successfully."

    def completions(self, body: dict) -> tuple[int, dict]:
        model = body.get("model")
        if model != self.served_name and model not in self.adapters:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        prompts = body.get("prompt")
        if prompts and isinstance(prompts, list) and all(isinstance(t, int) for t in prompts):
            prompts = [prompts]
        if not (isinstance(prompts, list) and prompts
                and all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompts)):
            return _error(400, "prompt must be a list of token ids or a list of such lists (this stand-in)")
        max_tokens = int(body.get("max_tokens", 16))
        if body.get("temperature", 1.0) != 0:
            return _error(400, "this stand-in decodes greedily only: send temperature 0")
        for prompt in prompts:
            if len(prompt) + max_tokens > self.max_model_len:
                return _error(400, f"This model's maximum context length is {self.max_model_len} tokens. However, "
                                   f"you requested {len(prompt) + max_tokens} tokens ({len(prompt)} in the messages, "
                                   f"{max_tokens} in the completion). Please reduce the length of the messages or "
                                   "completion.")
        stop_ids = set(body.get("stop_token_ids") or []) | {self.tokenizer.eos_token_id}
        choices = [self._choice(i, model, prompt, max_tokens, stop_ids, body.get("skip_special_tokens", True))
                   for i, prompt in enumerate(prompts)]
        usage = {"prompt_tokens": sum(map(len, prompts)), "completion_tokens": sum(c.pop("_n") for c in choices)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return 200, {"id": f"cmpl-{time.monotonic_ns()}", "object": "text_completion", "created": int(time.time()),
                     "model": model, "choices": choices, "usage": usage}

    def _choice(self, index: int, model: str, prompt: list[int], max_tokens: int, stop_ids: set[int],
                skip_special_tokens: bool) -> dict:
        import torch

        with self._model_lock:
            lm = self._model(None if model == self.served_name else model)
            with torch.inference_mode():
                out = lm.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                  do_sample=False, max_new_tokens=max_tokens, eos_token_id=sorted(stop_ids),
                                  pad_token_id=self.tokenizer.pad_token_id)[0, len(prompt):].tolist()
        stopped = next((i for i, token in enumerate(out) if token in stop_ids), None)
        tokens = out if stopped is None else out[:stopped]
        return {"index": index, "text": self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens),
                "logprobs": None, "finish_reason": "length" if stopped is None else "stop",
                "stop_reason": None if stopped is None else out[stopped], "_n": len(out)}

    def _model(self, adapter: str | None):
        if adapter not in self._models:
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            base = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype="float32").eval()
            self._models[adapter] = base if adapter is None else \
                PeftModel.from_pretrained(base, self.adapters[adapter]).merge_and_unload().eval()
        return self._models[adapter]

    # ------------------------------------------------------------ HTTP

    def _handler(self):
        standin = self
        routes = {"/v1/load_lora_adapter": "load_lora_adapter", "/v1/unload_lora_adapter": "unload_lora_adapter",
                  "/v1/completions": "completions"}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(*standin.models())
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                route = routes.get(self.path)
                if route in ("load_lora_adapter", "unload_lora_adapter") and not standin.runtime_lora_updating:
                    route = None  # vLLM adds these routes only with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
                if route is None:
                    self._send(404, {"detail": "Not Found"})
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                except json.JSONDecodeError as err:
                    self._send(*_error(400, f"invalid JSON: {err}"))
                    return
                with standin._lock:
                    standin.requests.append((self.path, body))
                    standin.in_flight += 1
                    standin.max_in_flight = max(standin.max_in_flight, standin.in_flight)
                try:
                    self._send(*getattr(standin, route)(body))
                finally:
                    with standin._lock:
                        standin.in_flight -= 1

            def _send(self, status: int, body: dict | str) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _error(code: int, message: str, kind: str = "BadRequestError") -> tuple[int, dict]:
    return code, {"error": {"message": message, "type": kind, "param": None, "code": code}}

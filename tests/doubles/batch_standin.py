"""A stand-in for an OpenAI-compatible batch endpoint on 127.0.0.1 (tests only; not a real provider).

Implements enough of OpenAI's shapes for litellm's `openai` provider with `api_base` pointing here:
`POST /v1/files` (multipart upload), `GET /v1/files/{id}/content`, `POST /v1/batches`,
`GET /v1/batches/{id}`, and `POST /v1/chat/completions` for the requests a client sends directly
(`batch_api = False` makes it a server without the batch endpoints).

Every request body is answered by the scripted `answer(body) -> str | None` (None: that line of the
batch output is an error). A batch stays `in_progress` while `hold` is set, and otherwise completes at
its next poll. Counters let a test prove what was paid for: `batches_created`, `uploads`, `chat_calls`.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[dict[str, Any]], "str | None"]


def completion(body: dict[str, Any], content: str) -> dict[str, Any]:
    """A chat.completion object as OpenAI returns it."""
    return {
        "id": "chatcmpl-standin", "object": "chat.completion", "created": 0, "model": body.get("model", ""),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }  # fmt: skip


class BatchStandIn:
    """Use as a context manager; `api_base` is what an `openai/...` LLMConfig points at."""

    def __init__(self, answer: Answer):
        self.answer = answer
        self.hold = False
        self.batch_api = True  # False: /v1/files and /v1/batches answer 404, as on a server without them
        self.fail_batches = False  # True: a batch ends as "failed" (as when the provider rejects its file)
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batches_created = 0
        self.uploads = 0
        self.polls = 0
        self.chat_calls = 0
        self.bodies: list[dict[str, Any]] = []  # every request body seen, batch lines and direct calls
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def __enter__(self) -> BatchStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the endpoints ---------------------------------------------------------------------------

    def upload(self, content_type: str, data: bytes) -> dict[str, Any]:
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + data)
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        content = parts["file"].get_payload(decode=True)
        with self._lock:
            self.uploads += 1
            file_id = f"file-{next(self._ids)}"
            self.files[file_id] = content
        return self._file_object(file_id, "batch")

    def create_batch(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.batches_created += 1
            batch_id = f"batch_{next(self._ids)}"
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": request["endpoint"], "errors": None,
                "input_file_id": request["input_file_id"], "completion_window": request["completion_window"],
                "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": 0,
                "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": request.get("metadata"),
            }  # fmt: skip
            return dict(self.batches[batch_id])

    def retrieve_batch(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            self.polls += 1
            batch = self.batches.get(batch_id)
            if batch is None:
                return None
            if batch["status"] in ("validating", "in_progress"):
                if self.fail_batches:
                    batch.update(status="failed", errors={"object": "list", "data": [
                        {"code": "invalid_file", "message": "scripted failure", "line": None, "param": None}]})
                elif self.hold:
                    batch["status"] = "in_progress"
                else:
                    self._finish(batch)
            return dict(batch)

    def chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.chat_calls += 1
            self.bodies.append(body)
        text = self.answer(body)
        if text is None:
            return 500, {"error": {"message": "scripted failure", "type": "server_error"}}
        return 200, completion(body, text)

    def _finish(self, batch: dict[str, Any]) -> None:
        """Answer every line of the batch's input file into an output file (called with the lock held)."""
        lines, done, failed = [], 0, 0
        for line in self.files[batch["input_file_id"]].decode().splitlines():
            item = json.loads(line)
            self.bodies.append(item["body"])
            text = self.answer(item["body"])
            if text is None:
                failed += 1
                lines.append({"id": f"r{len(lines)}", "custom_id": item["custom_id"], "response": None,
                              "error": {"code": "server_error", "message": "scripted failure"}})
            else:
                done += 1
                lines.append({"id": f"r{len(lines)}", "custom_id": item["custom_id"], "error": None,
                              "response": {"status_code": 200, "request_id": "req", "body": completion(item["body"], text)}})
        output_id = f"file-{next(self._ids)}"
        self.files[output_id] = "".join(json.dumps(line) + "\n" for line in lines).encode()
        batch.update(status="completed", output_file_id=output_id,
                     request_counts={"total": done + failed, "completed": done, "failed": failed})

    def _file_object(self, file_id: str, purpose: str) -> dict[str, Any]:
        return {"id": file_id, "object": "file", "bytes": len(self.files[file_id]), "created_at": 0,
                "filename": f"{file_id}.jsonl", "purpose": purpose, "status": "processed"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.startswith("/v1/batches/"):
                    batch = stand_in.retrieve_batch(path.rsplit("/", 1)[1])
                    self._json(200 if batch else 404, batch or {"error": {"message": "no such batch"}})
                elif path.startswith("/v1/files/") and path.endswith("/content"):
                    data = stand_in.files.get(path.split("/")[3])
                    self._bytes(200 if data is not None else 404, data or b"", "application/octet-stream")
                else:
                    self._json(404, {"error": {"message": f"not here: {path}"}})

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                if path in ("/v1/files", "/v1/batches") and not stand_in.batch_api:
                    self._json(404, {"error": {"message": f"not here: {path}"}})
                elif path == "/v1/files":
                    self._json(200, stand_in.upload(self.headers["Content-Type"], data))
                elif path == "/v1/batches":
                    self._json(200, stand_in.create_batch(json.loads(data)))
                elif path == "/v1/chat/completions":
                    self._json(*stand_in.chat(json.loads(data)))
                else:
                    self._json(404, {"error": {"message": f"not here: {path}"}})

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                self._bytes(status, json.dumps(payload).encode(), "application/json")

            def _bytes(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

"""Provider batch APIs for many requests at once (`llm.batch: true`), through litellm's files + batches calls.

OpenAI's batch shape, which litellm speaks for `openai/` and `hosted_vllm/` models (and maps for
`bedrock/`): the requests go up as one JSONL file of
`{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}` lines, a batch is created
on it, polled until it ends, and its output file maps each custom_id to the reply the chat endpoint
would have given. The client (`LLMClient.complete_json_many`) builds each body with its own request
code and uses the request's cache key as its custom_id, so a batch reply goes through the same parse,
validation, re-ask and cache path as a direct call.

Paying once: the batch id is recorded in a `BatchLedger` (the run store, wired by the pipeline)
before any waiting, under the hash of the call's whole request set; a run killed while the batch
runs finds the id again when it redoes the stage and only polls. Waiting longer than
`batch_timeout_s` raises `BatchPending` (the batch stays recorded: run again to keep waiting).

Verified only against a local test server speaking OpenAI's files and batches shapes (the project's
tests), not against OpenAI, Bedrock or vLLM themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pada.errors import PadaError

log = logging.getLogger(__name__)

# litellm provider of a model string's prefix -> the provider its files / batches calls take.
BATCH_PROVIDERS = {"openai": "openai", "hosted_vllm": "hosted_vllm", "bedrock": "bedrock"}
ENDPOINT = "/v1/chat/completions"
DONE = ("completed", "expired", "cancelled")  # ended, with an output file for what finished
ENDED = (*DONE, "failed")


class BatchPending(PadaError):
    """A recorded batch has not ended within `batch_timeout_s`; running the stage again polls it again."""


@dataclass
class BatchRecord:
    """What a ledger keeps about one batch: the request set it answers and where to find it."""

    stage: str
    content_hash: str
    provider: str
    batch_id: str
    input_file_id: str
    status: str
    n_requests: int = 0


class BatchLedger(Protocol):
    """Where batch ids live across restarts (the pipeline passes the run store's, keyed by iteration)."""

    def find(self, stage: str, content_hash: str) -> BatchRecord | None: ...

    def record(self, record: BatchRecord) -> None: ...

    def set_status(self, stage: str, content_hash: str, status: str) -> None: ...


def request_set_hash(keys: Sequence[str]) -> str:
    """sha256 of a call's request keys (order-free): the same round of the same stage gets the same hash."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def batch_model(model: str) -> str:
    """The model name a batch body carries: OpenAI-compatible servers want it without litellm's prefix;
    litellm's Bedrock files call reads the prefixed name itself."""
    provider, _, name = model.partition("/")
    return model if provider == "bedrock" else name


def input_jsonl(bodies: dict[str, dict[str, Any]]) -> bytes:
    """The batch input file: one chat-completions request per line, its custom_id the request's cache key."""
    lines = [json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}, ensure_ascii=False)
             for key, body in bodies.items()]
    return ("\n".join(lines) + "\n").encode("utf-8")


def parse_output(text: str) -> dict[str, dict[str, Any]]:
    """custom_id -> chat-completion body, for the lines that succeeded; errored or unreadable lines are left
    out (those requests go the normal way)."""
    replies: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        response = item.get("response") if isinstance(item, dict) else None
        body = response.get("body") if isinstance(response, dict) else None
        if isinstance(body, dict) and response.get("status_code", 200) == 200 and body.get("choices"):
            replies[str(item.get("custom_id"))] = body
    return replies


@dataclass
class BatchSettings:
    """Polling: first wait `poll_s`, doubling up to `poll_max_s`, giving up (BatchPending) after `timeout_s`."""

    poll_s: float
    poll_max_s: float
    timeout_s: float


class BatchRunner:
    """Runs one request set as a provider batch: find or create it, wait for it, read its output.

    `transport`: api_base / api_key / extra_headers / timeout exactly as the client's direct calls send them.
    `retryable(exc)`: whether a failed poll is worth repeating; `redact(text)`: masks credentials a server
    echoed into an error before it is logged (both the client's own rules).
    """

    def __init__(self, model: str, transport: dict[str, Any], settings: BatchSettings,
                 ledger: BatchLedger | None, retryable: Callable[[Exception], bool],
                 redact: Callable[[str], str], sleep: Callable[[float], None], litellm: Any):
        self.provider = BATCH_PROVIDERS[model.split("/", 1)[0]]
        self.transport = {**transport, "custom_llm_provider": self.provider}
        if self.provider == "bedrock":  # litellm's Bedrock batch calls pick their config by model
            self.transport["model"] = model
        self.settings, self.ledger, self.retryable, self.redact = settings, ledger, retryable, redact
        self._sleep, self._litellm = sleep, litellm

    def replies(self, stage: str, content_hash: str, bodies: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """custom_id -> reply body for the requests the batch answered; {} when no batch could run."""
        record = self.ledger.find(stage, content_hash) if self.ledger is not None else None
        if record is None:
            try:
                record = self._create(stage, content_hash, bodies)
            except Exception as exc:  # e.g. a server without a batch API: the requests go the normal way
                log.warning("could not start a %s batch for %s (%s); sending its %d requests one by one",
                            self.provider, stage, self.redact(str(exc)), len(bodies))
                return {}
        else:
            log.info("%s: polling batch %s recorded earlier (%d requests)", stage, record.batch_id, record.n_requests)
        batch = self._wait(record)
        if batch is None or batch.status not in DONE or not getattr(batch, "output_file_id", None):
            return {}
        content = self._litellm.file_content(file_id=batch.output_file_id, **self.transport)
        return parse_output(_text(content))

    def _create(self, stage: str, content_hash: str, bodies: dict[str, dict[str, Any]]) -> BatchRecord:
        """Upload the input file and create the batch; the id is in the ledger before anything waits on it."""
        upload = self._litellm.create_file(file=("pada-batch.jsonl", input_jsonl(bodies), "application/jsonl"),
                                           purpose="batch", **self.transport)
        batch = self._litellm.create_batch(completion_window="24h", endpoint=ENDPOINT, input_file_id=upload.id,
                                           metadata={"pada_stage": stage[:512]}, **self.transport)
        record = BatchRecord(stage=stage, content_hash=content_hash, provider=self.provider, batch_id=batch.id,
                             input_file_id=upload.id, status=str(batch.status), n_requests=len(bodies))
        if self.ledger is not None:
            self.ledger.record(record)
        log.info("%s: batch %s created for %d requests", stage, batch.id, len(bodies))
        return record

    def _wait(self, record: BatchRecord) -> Any:
        """Poll with backoff until the batch ends; None when it can no longer be read (the requests go the
        normal way). Raises BatchPending after `timeout_s`."""
        deadline = time.monotonic() + self.settings.timeout_s
        delay = self.settings.poll_s
        status = record.status
        while True:
            try:
                batch = self._litellm.retrieve_batch(batch_id=record.batch_id, **self.transport)
            except Exception as exc:
                if not self.retryable(exc):
                    log.warning("batch %s cannot be read (%s); sending its requests one by one", record.batch_id,
                                self.redact(str(exc)))
                    self._set_status(record, "unreadable")
                    return None
                batch = None
            if batch is not None and batch.status != status:
                status = batch.status
                self._set_status(record, status)
            if batch is not None and status in ENDED:
                if status == "failed":
                    log.warning("batch %s failed (%s); sending its requests one by one", record.batch_id,
                                self.redact(str(getattr(batch, "errors", None))))
                return batch
            if time.monotonic() + delay > deadline:
                raise BatchPending(f"{record.stage}: batch {record.batch_id} is still {status} after "
                                   f"{self.settings.timeout_s:g} s; it is recorded, so running again waits for it "
                                   "instead of paying again")
            self._sleep(delay)
            delay = min(self.settings.poll_max_s, delay * 2)

    def _set_status(self, record: BatchRecord, status: str) -> None:
        if self.ledger is not None:
            self.ledger.set_status(record.stage, record.content_hash, status)


def _text(content: Any) -> str:
    """The text of litellm's file_content answer (an httpx-like binary response)."""
    data = getattr(content, "content", content)
    return data.decode("utf-8") if isinstance(data, bytes) else str(getattr(content, "text", data))

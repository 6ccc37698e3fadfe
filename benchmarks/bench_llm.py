"""Benchmark the LLM client's overhead: concurrency and cache, against a slow local stub server.

A threading OpenAI-compatible server on 127.0.0.1 answers every chat request after
`--delay` seconds (default 0.2). The client sends `--n` JSON requests (default 64)
through `openai/<model>` + api_base:

  1. warm-up: litellm import (`client.warm_up()`), then one request (HTTP client creation);
  2. concurrency 1 (ideal n × delay);
  3. concurrency 8 (ideal n / 8 × delay; goal: within 1.5× of ideal), filling a cache;
  4. the same 64 requests again, served from the cache (goal: ≥ 50× faster than step 3).

Run:  .venv/bin/python benchmarks/bench_llm.py [--n 64] [--delay 0.2] [--concurrency 8]
Nothing leaves the machine; the stub needs no key (a placeholder is set if none is).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from pydantic import BaseModel  # noqa: E402

from pada.llm import JSONRequest, LLMClient, LLMConfig  # noqa: E402


class Verdict(BaseModel):
    label: str
    score: int


def start_stub(delay_s: float) -> ThreadingHTTPServer:
    """OpenAI-compatible /v1/chat/completions that sleeps `delay_s` per request, one thread per request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
        wbufsize = 1 << 16  # headers + body in one send: avoids a 40 ms Nagle / delayed-ACK stall per reply

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(delay_s)
            number = re.search(r"Rate sample \S+ (\d+)", body["messages"][0]["content"]).group(1)
            payload = {
                "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": json.dumps({"label": "x", "score": int(number)})}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
            }  # fmt: skip
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def requests_for(n: int, tag: str) -> list[JSONRequest]:
    return [JSONRequest([{"role": "user", "content": f"Rate sample {tag} {i}"}], Verdict, "bench") for i in range(n)]


def timed_batch(config: LLMConfig, requests: list[JSONRequest]) -> tuple[float, LLMClient]:
    client = LLMClient(config)
    started = time.perf_counter()
    results = client.complete_json_many(requests)
    elapsed = time.perf_counter() - started
    expected = [int(r.messages[0]["content"].rsplit(" ", 1)[-1]) for r in requests]
    assert [r.value.score if r.ok else None for r in results] == expected, "wrong or reordered results"
    return elapsed, client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="requests per run")
    parser.add_argument("--delay", type=float, default=0.2, help="stub server latency, seconds")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "bench-placeholder")  # the stub ignores it

    server = start_stub(args.delay)
    api_base = f"http://127.0.0.1:{server.server_port}/v1"
    cache_dir = Path(tempfile.mkdtemp(prefix="pada-bench-llm-"))

    def config(concurrency: int, cache: Path | None = None) -> LLMConfig:
        return LLMConfig(model="openai/bench-model", api_base=api_base, concurrency=concurrency, cache_dir=cache)

    started = time.perf_counter()
    LLMClient(config(1)).warm_up()
    import_s = time.perf_counter() - started
    warm_s, _ = timed_batch(config(1), requests_for(1, "warmup"))
    serial_s, _ = timed_batch(config(1), requests_for(args.n, "serial"))
    parallel_s, _ = timed_batch(config(args.concurrency, cache_dir), requests_for(args.n, "parallel"))
    cached_s, cached_client = timed_batch(config(args.concurrency, cache_dir), requests_for(args.n, "parallel"))
    server.shutdown()
    assert all(call.cache_hit for call in cached_client.calls)

    ideal_serial = args.n * args.delay
    ideal_parallel = args.n / args.concurrency * args.delay
    print(f"stub latency {args.delay:.3f} s, {args.n} requests, cache in {cache_dir}")
    print(f"litellm import (client.warm_up())        {import_s:7.3f} s")
    print(f"first request (HTTP client creation)     {warm_s:7.3f} s")
    print(f"concurrency 1                            {serial_s:7.3f} s   ideal {ideal_serial:.2f} s   "
          f"ratio {serial_s / ideal_serial:.2f}x  ({(serial_s - ideal_serial) / args.n * 1000:.1f} ms/request overhead)")  # fmt: skip
    print(f"concurrency {args.concurrency:<3d}                          {parallel_s:7.3f} s   ideal {ideal_parallel:.2f} s   "
          f"ratio {parallel_s / ideal_parallel:.2f}x  (goal <= 1.5x)")  # fmt: skip
    print(f"speed-up c{args.concurrency} vs c1                         {serial_s / parallel_s:7.2f}x")
    print(f"cached re-run                            {cached_s:7.3f} s   {parallel_s / cached_s:.0f}x faster than the first "
          f"(goal >= 50x), {cached_s / args.n * 1000:.2f} ms/request")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

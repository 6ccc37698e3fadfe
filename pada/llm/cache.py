"""On-disk cache of LLM replies, so a resumed or repeated run pays for nothing twice.

Key: sha256 of the canonical JSON of the full request (model, api_base, messages,
temperature, max_tokens, extra params, schema, caller's salt) — see
`request_key`. API keys are never part of a request dict, so they never reach a
key or a file. Value: only the reply text and its token usage.

Layout: `<root>/<key[:2]>/<key>.json`. Writes go to a temp file in the same
folder and are renamed into place, so a kill -9 leaves either the old entry, the
new one or a stray temp file — never a half-written entry. An unreadable entry
is treated as a miss (and overwritten by the next successful call).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def request_key(request: dict[str, Any]) -> str:
    """sha256 hex of the request as canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ReplyCache:
    """Reply text + usage per request key, stored as small JSON files under `root`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry {"text", "usage"}, or None on a miss or a corrupt file."""
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            return None
        usage = entry.get("usage") if isinstance(entry.get("usage"), dict) else {}
        return {"text": entry["text"], "usage": usage}

    def put(self, key: str, text: str, usage: dict[str, int]) -> None:
        """Store atomically: write a temp file beside the target, fsync, rename over it."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"text": text, "usage": usage}, ensure_ascii=False)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{key[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

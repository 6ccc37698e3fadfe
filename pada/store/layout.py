"""Where runs live on disk and how they are named.

    <runs root>/<run id>/run.db            SQLite database (+ -wal / -shm while open)
    <runs root>/<run id>/adapters/iter-N/  LoRA adapter the trainer wrote in iteration N
    <runs root>/<run id>/cache/<name>/     caches (LLM responses, embeddings, ...)
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

DB_NAME = "run.db"


def runs_root(override: str | os.PathLike | None = None) -> Path:
    """Runs root: `override` (e.g. `--runs-dir`), else $PADA_RUNS_DIR, else `runs/` in the current directory."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("PADA_RUNS_DIR"):
        return Path(os.environ["PADA_RUNS_DIR"]).expanduser()
    return Path.cwd() / "runs"


def _slug(text: str) -> str:
    """Keep run ids safe as directory names and readable: `ARC Challenge` -> `arc_challenge`."""
    return re.sub(r"[^a-z0-9_.]+", "_", text.lower()).strip("_.")[:40]


def _config_name(config: Mapping[str, Any], key: str) -> str | None:
    """`config[key]`, or its `name` when it is a nested section (`{"task": {"name": ...}}`)."""
    value = config.get(key)
    if isinstance(value, Mapping):
        value = value.get("name")
    return str(value) if value not in (None, "") else None


def task_name(config: Mapping[str, Any]) -> str | None:
    return _config_name(config, "task")


def readable_run_id(config: Mapping[str, Any], now: datetime | None = None) -> str:
    """`20261123-130501-arc_challenge-pada`: local start time, task and method from the config."""
    parts = [(now or datetime.now()).strftime("%Y%m%d-%H%M%S")]
    for key in ("task", "method"):
        name = _config_name(config, key)
        if name and _slug(name):
            parts.append(_slug(name))
    return "-".join(parts)


def make_run_dir(root: Path, config: Mapping[str, Any], run_id: str | None = None) -> Path:
    """Create and return a new, empty run directory.

    Without `run_id` the readable id gets a short random suffix when another run
    started in the same second; `mkdir(exist_ok=False)` makes the claim atomic,
    so two processes never get the same directory.
    """
    root.mkdir(parents=True, exist_ok=True)
    if run_id is not None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", run_id):
            raise ValueError(f"run id {run_id!r}: start with a letter or digit, then letters, digits, '_', '.', '-'")
        path = root / run_id
        path.mkdir()  # FileExistsError is turned into a StoreError by the caller
        return path
    base = readable_run_id(config)
    candidates = [base] + [f"{base}-{secrets.token_hex(2)}" for _ in range(20)]
    for candidate in candidates:
        try:
            (root / candidate).mkdir()
            return root / candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not find a free run id for {base} under {root}")

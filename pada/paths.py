"""Where data, bundled models and caches live. Every location can be overridden."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Benchmark data root: `--data-dir`, else $PADA_DATA_DIR, else ../shared/data beside the repo."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("PADA_DATA_DIR"):
        return Path(os.environ["PADA_DATA_DIR"]).expanduser()
    return REPO_ROOT.parent / "shared" / "data"


def cache_dir() -> Path:
    """Converted model checkpoints and other derived files: $PADA_CACHE_DIR, else ~/.cache/pada."""
    root = Path(os.environ.get("PADA_CACHE_DIR") or Path.home() / ".cache" / "pada").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root

"""Benchmark tasks and their registry.

    from pada.tasks import get_task, TASK_NAMES
    task = get_task("gsm8k")                      # data from pada.paths.data_dir()
    splits = task.splits(train_size=300, seed=0)  # nested train subset, fixed validation / test
    task.score(example, "... #### 18")            # -> Score(correct=True, extracted="18")
    get_task("custom", path="mine.jsonl", scorer="number")   # or get_task("custom:mine.jsonl", scorer=...)

`TASK_NAMES` are the built-in benchmarks; "custom" (a user's JSONL) is
accepted by `get_task` as well. Task objects are cached per process (same
name, data dir and options -> the same object), so source files are parsed
once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pada.paths import data_dir
from pada.tasks.arc import ArcChallenge
from pada.tasks.base import Pools, Splits, Task, TaskError
from pada.tasks.code import HumanEval
from pada.tasks.custom import SCORERS, CustomTask
from pada.tasks.gsm8k import GSM8K
from pada.tasks.hellaswag import HellaSwag
from pada.tasks.squad import SQuAD

BUILTIN_TASKS: dict[str, type[Task]] = {
    "arc_challenge": ArcChallenge,
    "gsm8k": GSM8K,
    "hellaswag": HellaSwag,
    "squad": SQuAD,
    "humaneval": HumanEval,
}
TASK_NAMES: tuple[str, ...] = tuple(BUILTIN_TASKS)
CUSTOM = "custom"
CUSTOM_SCORERS: tuple[str, ...] = tuple(SCORERS)

_CACHE: dict[tuple, Task] = {}


def get_task(name: str, data_dir: str | os.PathLike | None = None, **options: Any) -> Task:
    """The task called `name` ("gsm8k", ..., "custom" or "custom:<path>"), built once per process.

    options: task settings, e.g. `path=` and `scorer=` ("exact", "mc", "number",
    "code") for custom; `timeout_s=` / `allow_unsandboxed=` for code scoring;
    `max_context_chars=` for squad. Unknown names or options raise TaskError.
    """
    key_name = name.strip()
    if key_name.startswith(CUSTOM + ":"):
        options = {**options, "path": key_name[len(CUSTOM) + 1:]}
        key_name = CUSTOM
    cls = CustomTask if key_name == CUSTOM else BUILTIN_TASKS.get(key_name)
    if cls is None:
        raise TaskError(f"unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)}, custom:<path.jsonl>")
    if cls is not CustomTask:  # a custom task reads only its own file
        check_data_root(data_dir)
    cache_key = (key_name, str(_data_root(data_dir)), _options_key(options))
    if cache_key not in _CACHE:
        try:
            _CACHE[cache_key] = cls(data_dir, **options)
        except TypeError as err:
            raise TaskError(f"bad option for task {key_name!r}: {err}") from None
    return _CACHE[cache_key]


def check_data_root(override: str | os.PathLike | None = None, flag: str = "--data-dir / data_dir") -> None:
    """A data directory the user configured (`override`, named `flag` in messages, or PADA_DATA_DIR) must exist.

    Only when none is configured may a task fall back to the Hugging Face hub
    (through ../shared/data being absent); a typo in a path must not silently
    download data, or fail two minutes later with a hub error.
    """
    if override:
        value, source = override, flag
    elif os.environ.get("PADA_DATA_DIR"):
        value, source = os.environ["PADA_DATA_DIR"], "PADA_DATA_DIR"
    else:
        return
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise TaskError(f"{source} {value}: {what}; point --data-dir or PADA_DATA_DIR at the benchmark data "
                        "folder, or leave both unset to use the Hugging Face hub copy")


def _data_root(override) -> Path:
    return data_dir(override).resolve()


def _options_key(options: dict[str, Any]) -> tuple:
    items = []
    for key, value in sorted(options.items()):
        if key == "path" and value:
            path = Path(value).expanduser().resolve()
            stamp = path.stat().st_mtime_ns if path.is_file() else None
            value = (str(path), stamp)  # an edited custom file is read again
        items.append((key, value))
    return tuple(items)


def clear_cache() -> None:
    """Forget cached task objects (tests that rewrite data files use this)."""
    _CACHE.clear()


__all__ = ["TASK_NAMES", "CUSTOM", "CUSTOM_SCORERS", "BUILTIN_TASKS", "get_task", "clear_cache", "check_data_root",
           "Task", "TaskError", "Pools", "Splits"]

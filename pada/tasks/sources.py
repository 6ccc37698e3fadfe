"""Reading benchmark source files: local JSONL first, the Hugging Face hub as a fallback.

Every loader yields `Row`s: the raw record as the local file holds it, with
where it came from (file and 0-based line) so a bad field is reported as
"file line N: field 'x' ...". Hub loaders (one small function per source, in
`pada.tasks.hub`) convert hub rows into the very same raw dicts, so all code
after loading is shared and ids (`train-17`) are the same for both sources.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pada.tasks.base import TaskError


@dataclass
class Row:
    record: dict[str, Any]
    source: str  # file path (or hub name) for messages
    index: int  # 0-based line number in the source file (or row number on the hub)

    def where(self) -> str:
        return f"{self.source} line {self.index + 1}"

    def get(self, field: str, kind: type | tuple[type, ...] = str, required: bool = True) -> Any:
        """The field's value, checked for type; a missing or wrong field raises TaskError naming file/line/field."""
        if field not in self.record or self.record[field] is None:
            if not required:
                return None
            raise TaskError(f"{self.where()}: field '{field}' is missing")
        value = self.record[field]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise TaskError(f"{self.where()}: field '{field}' should be {names}, got {type(value).__name__}")
        return value

    def fail(self, field: str, problem: str) -> TaskError:
        return TaskError(f"{self.where()}: field '{field}' {problem}")


def read_jsonl(path: Path) -> Iterator[Row]:
    """Rows of a JSONL file (plain or .gz); blank lines are skipped, a bad line raises TaskError.

    The file is read whole and split (much faster than line-by-line through a
    gzip text wrapper for SQuAD's 87 MB train file).
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise TaskError(f"{path}: cannot read ({err})") from None
    for index, line in enumerate(raw.split(b"\n")):
        if not line.strip():
            continue
        yield Row(parse_json_object(line, f"{path} line {index + 1}"), str(path), index)


class _NotJSON:
    """Stands in for NaN, Infinity or a number too big for a float while a line is parsed."""

    def __init__(self, text: str):
        self.text = text


def _parse_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else _NotJSON(text)


def _find_not_json(record: Any) -> tuple[str, str] | None:
    """(field path, text) of the first NaN / Infinity / overflowing number in a parsed record."""
    stack: list[tuple[str, Any]] = [("", record)]
    while stack:
        name, value = stack.pop()
        if isinstance(value, _NotJSON):
            return name or "(value)", value.text
        if isinstance(value, dict):
            stack.extend((f"{name}.{key}" if name else str(key), v) for key, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{name}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None


def parse_json_object(line: bytes | str, where: str, error: type[Exception] = TaskError) -> dict[str, Any]:
    """One JSONL line as a dict; anything else raises `error` naming `where` (file and line) and the field.

    Refused with one line instead of a traceback or a silent oddity: bytes that are
    not UTF-8, invalid JSON, nesting too deep for the parser (RecursionError),
    NaN / Infinity (not JSON values, though Python's json accepts them) and
    numbers that overflow a float.
    """
    seen: list[str] = []

    def constant(text: str):
        seen.append(text)
        return _NotJSON(text)

    def number(text: str):
        value = _parse_float(text)
        if isinstance(value, _NotJSON):
            seen.append(text)
        return value

    try:
        record = json.loads(line, parse_constant=constant, parse_float=number)
    except UnicodeDecodeError as err:
        raise error(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise error(f"{where}: not valid JSON ({err.msg}, column {err.colno})") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply to read (thousands of levels); "
                    "write one flat object per line") from None
    if not isinstance(record, dict):
        raise error(f"{where}: expected a JSON object, got {type(record).__name__}")
    if seen:
        name, text = _find_not_json(record) or ("(value)", seen[0])
        raise error(f"{where}: field '{name}': {text} is not a JSON number; write a finite number or text")
    return record


def hub_rows(records: Iterable[dict[str, Any]], name: str) -> list[Row]:
    return [Row(record, name, index) for index, record in enumerate(records)]


def load_rows(data_root: Path, relpath: str, hub_loader: Callable[[], Iterable[dict[str, Any]]],
              hub_name: str) -> list[Row]:
    """Rows of `data_root/relpath`; where no local copy exists, the same rows from the hub.

    A missing file with no hub access gives one line saying where we looked and
    how to point elsewhere.
    """
    path = data_root / relpath
    if path.is_file():
        return list(read_jsonl(path))
    try:
        return hub_rows(hub_loader(), f"hf:{hub_name}")
    except Exception as err:  # no datasets package, offline, unknown repo: all mean "not available"
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        where = f"{path} (data dir {data_root} does not exist)" if not data_root.exists() else str(path)
        raise TaskError(
            f"no local copy of {relpath}: looked for {where}, and the Hugging Face hub copy ({hub_name}) "
            f"could not be loaded ({reason}); point --data-dir or PADA_DATA_DIR at a folder that holds {relpath}"
        ) from None

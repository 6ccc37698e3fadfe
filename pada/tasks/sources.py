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
        try:
            record = json.loads(line)
        except UnicodeDecodeError as err:
            raise TaskError(f"{path} line {index + 1}: not UTF-8 text ({err.reason})") from None
        except json.JSONDecodeError as err:
            raise TaskError(f"{path} line {index + 1}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise TaskError(f"{path} line {index + 1}: expected a JSON object, got {type(record).__name__}")
        yield Row(record, str(path), index)


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

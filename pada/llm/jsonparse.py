"""Turn an LLM's reply into a validated pydantic object.

Small models rarely return bare JSON: MEASURED.md found Qwen2.5-Coder-0.5B wraps
its JSON in a ```json fence in 8 of 8 replies, and they add prose, trailing
commas or single quotes. Parsing therefore tries cheap, safe fixes first and
only then hands the text to `json_repair` (which can also guess at truncated
output, so it is the last resort).

`parse_and_validate(text, schema)` is the one entry point the client uses; it
raises `ReplyError` with a message meant to be shown back to the model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_OPEN_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*)", re.DOTALL)  # a fence the model never closed


class ReplyError(ValueError):
    """The reply is not valid JSON for the schema; str(err) is written for the model to read."""


def parse_json(text: str) -> Any:
    """Parse `text` as JSON, repairing the usual small-model mistakes. Raises ReplyError."""
    for candidate in _candidates(text):
        value = _loads_lenient(candidate)
        if value is not None:
            return value
    value = _repair(text)
    if value is None:
        raise ReplyError("parse: the reply contains no JSON object")
    return value


def validate(data: Any, schema: type[BaseModel]) -> BaseModel:
    """Validate parsed JSON against `schema`. Raises ReplyError listing pydantic's complaints.

    A bare list is accepted for a schema whose only field is a list: small models
    often answer `[...]` when asked for `{"items": [...]}`.
    """
    list_field = _single_list_field(schema)
    if isinstance(data, list) and list_field:
        data = {list_field: data}
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise ReplyError(f"validation: {_short_errors(err)}") from None


def parse_and_validate(text: str, schema: type[BaseModel]) -> BaseModel:
    return validate(parse_json(text), schema)


def salvage_items(raw: str | None, field: str, item_type: Any) -> list:
    """From a reply that failed validation as a whole (wrong count, one bad entry): the entries of
    its list `field` that validate on their own as `item_type` (a pydantic model or any type
    pydantic validates). A single object counts as a one-entry list; no JSON at all gives []."""
    try:
        data = parse_json(raw or "")
    except ReplyError:
        return []
    if isinstance(data, dict):
        data = data.get(field, [data])
    adapter = TypeAdapter(item_type)
    items = []
    for entry in data if isinstance(data, list) else []:
        try:
            items.append(adapter.validate_python(entry))
        except ValidationError:
            continue
    return items


# -- parsing steps, cheapest first -------------------------------------------------------------


def _candidates(text: str) -> list[str]:
    """Substrings worth trying as JSON, in order: the whole reply, fenced blocks, the outermost bracket span."""
    stripped = text.strip()
    found = [stripped]
    found += [block.strip() for block in _FENCE.findall(stripped)]
    if "```" in stripped and not _FENCE.search(stripped):
        found += [m.strip() for m in _OPEN_FENCE.findall(stripped)]
    for source in list(found):
        span = _outer_span(source)
        if span and span != source:
            found.append(span)
    return found


def _loads_lenient(candidate: str) -> Any:
    """json.loads, then again without trailing commas; None when neither works or it is not a container."""
    for attempt in (candidate, _drop_trailing_commas(candidate)):
        try:
            value = json.loads(attempt)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(value, (dict, list)):
            return value
    return None


def _outer_span(text: str) -> str | None:
    """From the first '{' or '[' to the last matching closer: strips prose around the JSON."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None
    start = min(starts)
    closer = "}" if text[start] == "{" else "]"
    end = text.rfind(closer)
    return text[start : end + 1] if end > start else None


def _drop_trailing_commas(text: str) -> str:
    """Remove commas directly before '}' or ']', leaving string contents alone."""
    out: list[str] = []
    in_string = escaped = False
    for i, char in enumerate(text):
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char == "," and text[i + 1 :].lstrip()[:1] in ("}", "]"):
            continue
        out.append(char)
    return "".join(out)


def _repair(text: str) -> Any:
    """Last resort: json_repair (single quotes, missing quotes, truncation). None when it finds nothing."""
    import json_repair

    span = _outer_span(text) or text
    try:
        value = json_repair.loads(span)
    except Exception:  # json_repair is best effort; any failure just means "no JSON here"
        return None
    return value if isinstance(value, (dict, list)) and value else None


# -- validation helpers ------------------------------------------------------------------------


def _single_list_field(schema: type[BaseModel]) -> str | None:
    fields = schema.model_fields
    if len(fields) != 1:
        return None
    name, field = next(iter(fields.items()))
    origin = getattr(field.annotation, "__origin__", field.annotation)
    return name if origin in (list, tuple) else None


def _short_errors(err: ValidationError, limit: int = 8) -> str:
    """pydantic's errors as 'path: message' lines, without the long input echo."""
    lines = []
    for item in err.errors()[:limit]:
        where = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"{where}: {item['msg']}")
    more = len(err.errors()) - limit
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines)

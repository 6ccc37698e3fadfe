"""Prompt templates: `render(name, **variables)` turns `prompts/<name>.jinja2` into chat messages.

Template format (Jinja2, StrictUndefined: a missing variable is an error, not an
empty string)::

    You are an expert at analysing model failures.      <- system message (optional)
    ---user---
    Here are the failures:
    {% for f in failures %}{{ loop.index0 }}. {{ f.input }}{% endfor %}

Everything above the line `---user---` is the system message; everything below
is the user message. Without the separator the whole template is the user
message. Both parts are stripped; an empty system part is left out.

The JSON schema of the expected reply is NOT written in templates: the LLM
client appends it to the last message (`pada.llm.client.with_schema_instruction`).

Filters: `tojson` / `json` write plain JSON (not HTML-escaped, unlike Jinja's
built-in `tojson`), with an optional `indent`.

`preview(name)` renders a template with placeholder values (`{failures[0].input}`)
so the dashboard can show what each agent sends without running anything.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pada.records import Message

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
USER_SEPARATOR = "---user---"


def render(name: str, **variables: Any) -> list[Message]:
    """Render `prompts/<name>.jinja2` into [system?, user] messages."""
    text = _environment(str(PROMPTS_DIR)).get_template(f"{name}.jinja2").render(**variables)
    return split_messages(text)


def preview(name: str, **variables: Any) -> str:
    """The template rendered with placeholders for every variable not given, as readable text."""
    environment = _environment(str(PROMPTS_DIR))
    from jinja2 import meta

    source = environment.loader.get_source(environment, f"{name}.jinja2")[0]
    needed = meta.find_undeclared_variables(environment.parse(source))
    values = {var: _Placeholder(var) for var in needed}
    values.update(variables)
    messages = split_messages(environment.get_template(f"{name}.jinja2").render(**values))
    return "\n\n".join(f"[{message['role']}]\n{message['content']}" for message in messages)


def available() -> list[str]:
    """Template names (without .jinja2) in the prompts folder."""
    return sorted(path.stem for path in PROMPTS_DIR.glob("*.jinja2"))


def split_messages(text: str) -> list[Message]:
    """Split rendered text at the `---user---` line into system and user messages."""
    lines = text.splitlines()
    marker = next((i for i, line in enumerate(lines) if line.strip() == USER_SEPARATOR), None)
    if marker is None:
        system, user = "", text
    else:
        system, user = "\n".join(lines[:marker]), "\n".join(lines[marker + 1 :])
    messages: list[Message] = []
    if system.strip():
        messages.append({"role": "system", "content": system.strip()})
    messages.append({"role": "user", "content": user.strip()})
    return messages


@lru_cache(maxsize=4)
def _environment(folder: str) -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # prompts are not HTML
    )
    environment.filters["tojson"] = _to_json
    environment.filters["json"] = _to_json
    return environment


def _to_json(value: Any, indent: int | None = None) -> str:
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


class _Placeholder:
    """Stands in for any variable in `preview`: prints as {path}, iterates once, has every attribute."""

    def __init__(self, path: str):
        self._path = path

    def __str__(self) -> str:
        return "{" + self._path + "}"

    __repr__ = __str__

    def __getattr__(self, attr: str) -> _Placeholder:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Placeholder(f"{self._path}.{attr}")

    def __getitem__(self, key: Any) -> _Placeholder:
        return _Placeholder(f"{self._path}[{key}]")

    def __iter__(self):
        return iter([_Placeholder(f"{self._path}[0]")])

    def __len__(self) -> int:
        return 1

    def __bool__(self) -> bool:
        return True

    def items(self):
        return [(_Placeholder(f"{self._path}.key"), _Placeholder(f"{self._path}.value"))]

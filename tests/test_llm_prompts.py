"""Prompt templates: the ---user--- split, strict variables, plain JSON filter, placeholder preview."""

import jinja2
import pytest

from pada.llm import prompts


@pytest.fixture
def templates(tmp_path, monkeypatch):
    monkeypatch.setattr(prompts, "PROMPTS_DIR", tmp_path)

    def write(name: str, text: str) -> None:
        (tmp_path / f"{name}.jinja2").write_text(text)

    return write


def test_system_and_user_parts(templates):
    templates("judge", "You are a strict judge.\n---user---\nRate: {{ sample.question }}\n")
    messages = prompts.render("judge", sample={"question": "2+2?"})
    assert messages == [
        {"role": "system", "content": "You are a strict judge."},
        {"role": "user", "content": "Rate: 2+2?"},
    ]


def test_without_separator_everything_is_the_user_message(templates):
    templates("plain", "{% for f in failures %}{{ loop.index0 }}: {{ f }}\n{% endfor %}")
    assert prompts.render("plain", failures=["a", "b"]) == [{"role": "user", "content": "0: a\n1: b"}]


def test_missing_variable_is_an_error(templates):
    templates("needs", "---user---\n{{ task_description }}")
    with pytest.raises(jinja2.UndefinedError, match="task_description"):
        prompts.render("needs")


def test_json_filter_is_not_html_escaped(templates):
    templates("data", "---user---\n{{ item | tojson }}")
    assert prompts.render("data", item={"q": "a < b & 'c'"})[0]["content"] == '{"q": "a < b & \'c\'"}'


def test_preview_fills_placeholders_even_in_loops(templates):
    templates(
        "analysis",
        "Explain failures.\n---user---\nTask: {{ task }}\n"
        "{% for s in samples %}[{{ s.sample_idx }}] {{ s.query }}{% endfor %}\nUp to {{ n }} items.",
    )
    text = prompts.preview("analysis", n=5)
    assert text.startswith("[system]\nExplain failures.")
    assert "[user]\nTask: {task}" in text
    assert "[{samples[0].sample_idx}] {samples[0].query}" in text
    assert "Up to 5 items." in text
    assert prompts.available() == ["analysis"]


def test_preview_renders_every_shipped_template():
    for name in prompts.available():  # whatever templates the agents ship must be previewable
        assert "[user]" in prompts.preview(name)

"""Reply parsing and validation: the cheap fixes, json_repair as last resort, the bare-list wrap."""

from typing import Annotated

import pytest
from pydantic import BaseModel, StringConstraints

from pada.llm.jsonparse import ReplyError, parse_and_validate, parse_json, salvage_items, validate


class Item(BaseModel):
    sample_idx: int
    error_cause: str


class Analysis(BaseModel):
    items: list[Item]


class Pair(BaseModel):
    name: str
    score: int


def test_plain_json_parses():
    assert parse_json('{"name": "a", "score": 3}') == {"name": "a", "score": 3}


def test_code_fence_and_trailing_commas_are_repaired():
    reply = 'Here you go:\n```json\n{"name": "a", "score": 3,}\n```\nHope that helps.'
    assert parse_and_validate(reply, Pair) == Pair(name="a", score=3)


def test_prose_around_json_is_stripped():
    assert parse_json('Sure! The answer is {"name": "x", "score": 1} as requested.') == {"name": "x", "score": 1}


def test_unclosed_fence_still_parses():
    assert parse_json('```json\n{"name": "x", "score": 1}') == {"name": "x", "score": 1}


def test_single_quotes_are_repaired_by_json_repair():
    assert parse_json("{'name': 'x', 'score': 2}") == {"name": "x", "score": 2}


def test_trailing_comma_fix_leaves_strings_alone():
    assert parse_json('{"name": "a,}", "score": 1,}') == {"name": "a,}", "score": 1}


def test_text_without_json_raises():
    with pytest.raises(ReplyError, match="parse"):
        parse_json("I cannot help with that.")


def test_bare_list_is_wrapped_for_single_list_field_schema():
    value = validate([{"sample_idx": 0, "error_cause": "misread"}], Analysis)
    assert value.items[0].error_cause == "misread"


def test_bare_list_is_not_wrapped_for_other_schemas():
    with pytest.raises(ReplyError, match="validation"):
        validate([{"name": "a", "score": 1}], Pair)


def test_validation_error_names_the_field():
    with pytest.raises(ReplyError) as err:
        parse_and_validate('{"items": [{"sample_idx": "zero", "error_cause": "x"}]}', Analysis)
    assert "items.0.sample_idx" in str(err.value)
    assert str(err.value).startswith("validation:")



class Entry(BaseModel):
    n: int


def test_salvage_items_keeps_the_entries_that_validate_on_their_own():
    raw = '```json\n{"items": [{"n": 1}, {"n": "two"}, {"m": 3}, {"n": 4},]}\n```'
    assert [item.n for item in salvage_items(raw, "items", Entry)] == [1, 4]
    assert [item.n for item in salvage_items('{"n": 7}', "items", Entry)] == [7]  # one object: a list of one
    assert salvage_items('[{"n": 2}]', "items", Entry)[0].n == 2
    assert salvage_items("Sorry, no JSON here.", "items", Entry) == []
    assert salvage_items(None, "items", Entry) == []
    text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    assert salvage_items('{"lines": ["a", "  ", 3, " b "]}', "lines", text) == ["a", "b"]

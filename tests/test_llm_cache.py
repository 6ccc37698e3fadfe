"""The on-disk reply cache: stable keys, atomic writes, corrupt entries read as misses."""

import os

import pytest

from pada.llm.cache import ReplyCache, request_key


def test_key_ignores_dict_order_but_not_values():
    a = request_key({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0})
    b = request_key({"temperature": 0.0, "messages": [{"content": "hi", "role": "user"}], "model": "m"})
    c = request_key({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7})
    assert a == b
    assert a != c
    assert len(a) == 64


def test_round_trip(tmp_path):
    cache = ReplyCache(tmp_path)
    key = request_key({"x": 1})
    assert cache.get(key) is None
    cache.put(key, '{"a": 1}', {"prompt_tokens": 3, "completion_tokens": 2})
    assert cache.get(key) == {"text": '{"a": 1}', "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    assert [p.name for p in cache.path(key).parent.iterdir()] == [f"{key}.json"]  # no temp files left


@pytest.mark.parametrize("content", ["{not json", "", '["a list"]', '{"usage": {}}'])
def test_corrupt_entry_is_a_miss(tmp_path, content):
    cache = ReplyCache(tmp_path)
    key = request_key({"x": 2})
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_text(content)
    assert cache.get(key) is None


def test_failed_write_keeps_the_old_entry_and_leaves_no_temp_file(tmp_path, monkeypatch):
    cache = ReplyCache(tmp_path)
    key = request_key({"x": 3})
    cache.put(key, "old", {})

    def crash(_fd):
        raise OSError("disk died mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        cache.put(key, "new", {})
    assert cache.get(key)["text"] == "old"
    assert len(list(cache.path(key).parent.iterdir())) == 1

"""The request-body checks that run before any route (chargeapp/web/bodies.py): depth and text."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargeapp.web.bodies import MAX_JSON_DEPTH, json_depth_exceeds, bad_text_paths

pytestmark = pytest.mark.unit


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@pytest.mark.parametrize("text, deep", [
    (b"[" * 100_000 + b"]" * 100_000, True),
    (b'{"a":' * 40 + b"1" + b"}" * 40, True),
    (b"[" * 100_000, True),  # unclosed: still refused before the parser sees it
    (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, False),
    (b'{"name": "' + b"[" * 10_000 + b'"}', False),  # brackets inside a string do not nest
    (b'{"name": "a\\"[[[[' + b"[" * 100 + b'", "b": [1, 2]}', False),  # nor after an escaped quote
    (b'[' + b'"]", ' * 100 + b'1]', False),
    (b"", False),
])
def test_depth(text, deep):
    assert json_depth_exceeds(text) is deep


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=3),
                           max_leaves=60)


@given(json_values)
def test_depth_agrees_with_the_parsed_value(value):
    text = json.dumps(value).encode()
    for limit in (0, 1, 2, 3, 5):
        assert json_depth_exceeds(text, limit) is (_depth(value) > limit)


def test_lone_surrogates_and_nuls_are_found_with_their_path():
    body = json.loads('{"email": "a@b.io", "password": "\\ud800abc", "zones": [{"name": "ok"}, {"name": "\\udfff"}],'
                      ' "emoji": "\\ud83d\\ude00", "\\udc00": 1}')
    assert sorted(map(str, bad_text_paths(body))) == sorted(map(str, [
        ("password",), ("zones", 1, "name"), ("\\udc00",)]))
    assert bad_text_paths("\ud800") == [()]
    assert bad_text_paths({"name": "a\x00b", "ok": "a\tb\n", "a\x00": 1}) == [("name",), ("a\\x00",)]
    assert bad_text_paths({"a": ["🙂", "沪A12345"]}) == []

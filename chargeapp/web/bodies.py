"""What every request body must be before any route reads it: not too big, not too deep, valid text.

Checked once, before the routes (and before the login limit's account key reads the
body), so no route can forget it:

- size: ``MAX_CONTENT_LENGTH`` (``CHARGEAPP_MAX_BODY_BYTES``, 1 MiB) refuses a larger body with 413, whether
  it declares its length or streams it; the error handler answers JSON;
- depth: JSON nested deeper than ``MAX_JSON_DEPTH`` is a 400, found by counting brackets
  outside strings, so the parser never recurses into it (100,000 levels used to be a
  RecursionError, a 500 with a traceback);
- text: a lone UTF-16 surrogate (``"\\ud800"``) parses to a ``str`` that cannot be stored,
  hashed or encoded; it is a 422 naming the field, as marshmallow names any other bad field.
"""
from __future__ import annotations

import re
from itertools import accumulate

from flask import Flask, request
from werkzeug.exceptions import BadRequest, UnprocessableEntity

MAX_JSON_DEPTH = 32  # our deepest body is 3 levels; 32 leaves room and stays far from the parser's limit

# A JSON string: a quote, then runs of plain characters and escapes, then a quote (the unrolled loop: linear).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth_exceeds(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests arrays and objects deeper than ``limit`` (brackets in strings do not
    count). Malformed text is not judged here: the parser refuses it."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # every body a client sends normally: no need to look further
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def lone_surrogate_paths(value, path: tuple = ()) -> list[tuple]:
    """The paths (keys and indexes) of every string in a parsed JSON value, or key, that holds a lone UTF-16
    surrogate. The value's depth is already bounded (json_depth_exceeds), so recursion is safe."""
    found: list[tuple] = []
    if isinstance(value, str):
        if _has_lone_surrogate(value):
            found.append(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if _has_lone_surrogate(key):
                found.append((*path, key.encode("utf-8", "backslashreplace").decode("ascii")))
            else:
                found.extend(lone_surrogate_paths(item, (*path, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(lone_surrogate_paths(item, (*path, i)))
    return found


def _nest(paths: list[tuple], message: str) -> dict:
    """marshmallow's error shape: {"json": {"field": {"inner": ["message"]}}} (the body itself at "_schema")."""
    errors: dict = {}
    for path in paths:
        *parents, leaf = path or ("_schema",)
        node = errors
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = [message]
    return {"json": errors}


BAD_TEXT = "Not valid text: it holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape)."


def check_body() -> None:
    """Refuse a JSON body that is too deep (400) or holds text that is not Unicode (422, naming the fields)."""
    if not request.is_json:
        return
    data = request.get_data(cache=True)  # 413 beyond MAX_CONTENT_LENGTH
    if json_depth_exceeds(data):
        raise BadRequest(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
    if b"\\u" not in data:
        return  # a lone surrogate can only come from an escape: UTF-8 cannot encode one (a decode error)
    body = request.get_json(silent=True)
    paths = lone_surrogate_paths(body)
    if paths:
        err = UnprocessableEntity(BAD_TEXT)
        err.data = {"messages": _nest(paths, BAD_TEXT), "message": BAD_TEXT}
        raise err


def init_app(app: Flask) -> None:
    # Registered first, so it runs before any other before_request hook (the login limit's key reads the body).
    app.before_request_funcs.setdefault(None, []).insert(0, check_body)

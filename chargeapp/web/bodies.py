"""What every request body must be before any route reads it: not too big, not too deep, valid text.

Checked once, before the routes (and before the login limit's account key reads the
body), so no route can forget it:

- size: ``MAX_CONTENT_LENGTH`` (``CHARGEAPP_MAX_BODY_BYTES``, 1 MiB) refuses a larger body with 413, whether
  it declares its length or streams it; the error handler answers JSON;
- depth: JSON nested deeper than ``MAX_JSON_DEPTH`` is a 400, found by counting brackets
  outside strings, so the parser never recurses into it (100,000 levels used to be a
  RecursionError, a 500 with a traceback);
- text: a lone UTF-16 surrogate (``"\\ud800"``) parses to a ``str`` that cannot be stored,
  hashed or encoded, and PostgreSQL refuses a NUL in text; either, in the body, the query
  or a form, is a 422 naming the field, as marshmallow names any other bad field.
"""
from __future__ import annotations

import re
from itertools import accumulate

from flask import Flask, request
from werkzeug.exceptions import BadRequest, NotFound, UnprocessableEntity

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


def is_bad_text(text: str) -> bool:
    """Whether a string cannot be stored as text: a NUL (PostgreSQL refuses it in text; C code stops at it) or a lone
    UTF-16 surrogate (no encoding can write it)."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def bad_text_paths(value, path: tuple = ()) -> list[tuple]:
    """The paths (keys and indexes) of every string in a parsed JSON value, or key, that is_bad_text. The value's
    depth is already bounded (json_depth_exceeds), so recursion is safe."""
    found: list[tuple] = []
    if isinstance(value, str):
        if is_bad_text(value):
            found.append(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if is_bad_text(key):
                found.append((*path, key.encode("unicode_escape").decode("ascii")))
            else:
                found.extend(bad_text_paths(item, (*path, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(bad_text_paths(item, (*path, i)))
    return found


def _nest(location: str, paths: list[tuple], message: str) -> dict:
    """marshmallow's error shape: {location: {"field": {"inner": ["message"]}}} (the body itself at "_schema")."""
    errors: dict = {}
    for path in paths:
        *parents, leaf = path or ("_schema",)
        node = errors
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = [message]
    return {location: errors}


BAD_TEXT = "Not valid text: it holds a NUL character or a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape)."


def _refuse_text(location: str, paths: list[tuple]) -> None:
    err = UnprocessableEntity(BAD_TEXT)
    err.data = {"messages": _nest(location, paths, BAD_TEXT), "message": BAD_TEXT}
    raise err


def check_request() -> None:
    """Refuse a JSON body that is too deep (400), and text that cannot be stored (422, naming the fields) in the
    body or an API query; a path with a NUL names nothing (404). The pages answer junk in their queries and forms
    themselves, with the page (tests/integration/test_manage_pages.py)."""
    if "\x00" in request.path:
        raise NotFound()
    if request.path.startswith("/api/"):
        paths = [(name,) for name, value in request.args.items(multi=True) if is_bad_text(name) or is_bad_text(value)]
        if paths:
            _refuse_text("query", paths)
    if not request.is_json:
        return
    data = request.get_data(cache=True)  # 413 beyond MAX_CONTENT_LENGTH
    if json_depth_exceeds(data):
        raise BadRequest(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
    if b"\\u" not in data:
        return  # NULs and lone surrogates can only come from escapes (a raw one is a decode error)
    paths = bad_text_paths(request.get_json(silent=True))
    if paths:
        _refuse_text("json", paths)


def init_app(app: Flask) -> None:
    # Registered first, so it runs before any other before_request hook (the login limit's key reads the body).
    app.before_request_funcs.setdefault(None, []).insert(0, check_request)

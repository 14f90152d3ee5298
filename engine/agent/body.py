"""Request bodies of the agent API: JSON text, and nothing that merely looks like it.

A route that takes a body (engine/agent/ops.py read_body) accepts one only when

- it is sent as `Content-Type: application/json` (a `charset`, if given, must be UTF-8):
  anything else is 415 unsupported_media_type, before the body is read (a request without
  a body needs no type);
- it is UTF-8 (RFC 8259 §8.1): no other encoding is guessed, no byte order mark;
- it is strict JSON: no NaN / Infinity literals, no number too large for a float, no
  integer of more than MAX_INT_DIGITS digits, no key twice in one object;
- it nests at most MAX_DEPTH arrays / objects (no agent body nests more than two);
- every string in it, keys included, is Unicode text: JSON's `\\ud800` escape decodes to a
  lone surrogate, which no instance can be sent (MessagePack refuses it).

Each broken rule is a 400 bad_request naming it; the size limit (413) is the app's
client_max_size (engine/agent/server.py) and the json_errors middleware's.
"""

from __future__ import annotations

import json
import math

from aiohttp import web

from engine.agent.errors import api_error

JSON_TYPE = "application/json"
MAX_DEPTH = 32
MAX_INT_DIGITS = 100  # far past any 64-bit value; Python's own limit is 4300


NO_BODY = object()  # read_json's answer for a request without a body (or only white space)


class BodyError(ValueError):
    """The body breaks one of the rules above; the message says which."""


def check_content_type(request: web.Request) -> None:
    """415 unless a request with a body says it is JSON (UTF-8)."""
    if not request.body_exists:
        return
    given = request.headers.get("Content-Type")
    charset = (request.charset or "utf-8").lower().replace("_", "-")
    if given is None or request.content_type != JSON_TYPE or charset not in ("utf-8", "utf8"):
        got = "no Content-Type" if given is None else f"Content-Type {given[:100]!r}"
        raise api_error(
            415,
            "unsupported_media_type",
            f"the body must be sent as Content-Type: {JSON_TYPE} (UTF-8); got {got}",
        )


def _no_constants(name: str):
    raise BodyError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyError(f"number {text[:40]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BodyError(f"an integer of {len(text.lstrip('-'))} digits is too large")
    return int(text)


def _object(pairs: list) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise BodyError(f"duplicate key {key[:100]!r}: it appears more than once in an object")
        out[key] = value
    return out


def _text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BodyError(
            f"{where} holds \\u{ord(value[exc.start]):04x}, a lone surrogate, which is not "
            "Unicode text"
        ) from None


def _check_tree(body) -> None:
    """Depth and text of every value, iteratively (a deep body must not recurse here)."""
    stack = [(body, 1, "the body")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            _text(value, where)
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise BodyError(f"the body is nested too deeply (more than {MAX_DEPTH} levels)")
            if isinstance(value, dict):
                for key, item in value.items():
                    _text(key, "a key")
                    stack.append((item, depth + 1, f"{key[:40]!r}"))
            else:
                stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))


def parse_json(raw: bytes):
    """The JSON value in `raw` under the rules above, or BodyError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not UTF-8 (byte {exc.start}: {exc.reason})") from None
    try:
        body = json.loads(
            text,
            parse_constant=_no_constants,
            parse_float=_float,
            parse_int=_int,
            object_pairs_hook=_object,
        )
    except RecursionError:
        raise BodyError(f"the body is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except json.JSONDecodeError as exc:
        raise BodyError(f"the body is not valid JSON: {exc}") from None
    _check_tree(body)
    return body


async def read_json(request: web.Request):
    """The request's JSON value (NO_BODY: none, or only white space), or 415 / 400."""
    check_content_type(request)
    raw = await request.read()
    if not raw.strip():
        return NO_BODY
    try:
        return parse_json(raw)
    except BodyError as exc:
        raise api_error(400, "bad_request", str(exc)) from None

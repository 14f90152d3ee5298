"""JSON errors of the agent API: every failure is {"error": {"status", "code", "message"}}."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from engine.agent.config import AgentConfig

log = logging.getLogger("engine.agent.server")
CONFIG = web.AppKey("config", AgentConfig)
STATE = web.AppKey("state", dict)

_REASONS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    416: "offset_out_of_range",
    500: "internal",
}


# an answer's message, and the reason in the log line, are cut to these lengths: a refusal
# may quote what the caller sent, and that may be a 64 KiB string
MAX_MESSAGE = 1000
MAX_LOGGED = 300


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def for_log(text: object, limit: int = MAX_LOGGED) -> str:
    """`text` on one log line: control characters (and lone surrogates) escaped, cut."""
    text = str(text)
    if not text.isprintable():
        text = "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
        )
    return _cut(text, limit)


def error_body(status: int, code: str, message: str, rule: str | None = None) -> str:
    """`rule`: the reason code of engine/rules.py when a mirroring rule was broken."""
    error = {"status": status, "code": code, "message": _cut(message, MAX_MESSAGE)}
    if rule:
        error["rule"] = rule
    return json.dumps({"error": error})


class APIError(web.HTTPException):
    """An HTTP error whose body is the agent's JSON error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict | None = None,
        rule: str | None = None,
    ):
        self.status_code = status
        super().__init__(
            text=error_body(status, code, message, rule),
            content_type="application/json",
            headers=headers,
        )
        self.code = code
        self.message = message
        self.extra = dict(headers or {})


def api_error(
    status: int, code: str, message: str, headers: dict | None = None, rule: str | None = None
) -> APIError:
    return APIError(status, code, message, headers, rule)


def _peer(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if peer:
        return f"{peer[0]}:{peer[1]}"
    return request.remote or "?"


def _respond(request: web.Request, exc: APIError) -> web.Response:
    """The error answer, and its WARNING line: the request, the peer, who it was (once
    authenticated), the status and code, and the reason."""
    who = request.get("identity")  # engine/agent/auth.py IDENTITY, once authenticated
    log.warning(
        "%s %s from %s%s refused: %s %s: %s",
        request.method,
        for_log(request.rel_url, 200),
        _peer(request),
        f" ({for_log(who, 200)})" if who else "",
        exc.status_code,
        exc.code,
        for_log(exc.message),
    )
    resp = web.Response(
        status=exc.status_code, text=exc.text, content_type="application/json", headers=exc.extra
    )
    if exc.status_code in (413, 415):
        resp.force_close()  # the unread body must not be parsed as the next request
    return resp


@web.middleware
async def json_errors(request: web.Request, handler):
    """Answer every error in the JSON shape (aiohttp's own 404/405/413 included); an
    unexpected exception is logged and answered 500, and the agent keeps serving."""
    try:
        limit = request.app[CONFIG].max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            # refused before anything reads it, even on routes that take no body
            raise api_error(413, "request_too_large", f"request body larger than {limit} bytes")
        return await handler(request)
    except APIError as exc:
        return _respond(request, exc)
    except web.HTTPException as exc:
        if exc.status_code < 400:
            raise
        code = _REASONS.get(exc.status_code, "error")
        message = exc.reason
        if exc.status_code == 404:
            message = f"no such API route: {request.method} {request.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.path}"
        elif exc.status_code == 413:
            message = f"request body larger than {request.app[CONFIG].max_request_bytes} bytes"
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return _respond(request, api_error(exc.status_code, code, message, headers))
    except Exception:
        log.exception(
            "internal error on %s %s from %s", request.method, request.path, _peer(request)
        )
        return _respond(request, api_error(500, "internal", "internal error; see the agent log"))


class JSONErrorRequestHandler(web.RequestHandler):
    """aiohttp's HTTP protocol, except that requests refused by the HTTP parser itself
    (garbage, oversized header lines, bad methods) also get the JSON error shape and are
    logged as one line with the reason rather than a traceback."""

    def handle_error(self, request, status=500, exc=None, message=None):
        reason = str(getattr(exc, "message", None) or exc or message or "")
        reason = reason.strip().splitlines()[0][:200] if reason.strip() else "bad request"
        log.warning("bad request from %s refused (%s): %s", _peer(request), status, for_log(reason))
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        code = _REASONS.get(status, "error")
        resp = web.Response(
            status=status, text=error_body(status, code, reason), content_type="application/json"
        )
        resp.force_close()
        return resp

"""JSON errors of the agent API: every failure is {"error": {"status", "code", "message"}}."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from engine.agent_config import AgentConfig

log = logging.getLogger("engine.agent")
CONFIG = web.AppKey("config", AgentConfig)
STATE = web.AppKey("state", dict)

_REASONS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    416: "offset_out_of_range",
    500: "internal",
}


def error_body(status: int, code: str, message: str) -> str:
    return json.dumps({"error": {"status": status, "code": code, "message": message}})


class APIError(web.HTTPException):
    """An HTTP error whose body is the agent's JSON error shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        self.status_code = status
        super().__init__(
            text=error_body(status, code, message),
            content_type="application/json",
            headers=headers,
        )
        self.code = code
        self.message = message


def api_error(status: int, code: str, message: str, headers: dict | None = None) -> APIError:
    return APIError(status, code, message, headers)


def _peer(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if peer else "?"


@web.middleware
async def json_errors(request: web.Request, handler):
    """Turn every error into the JSON shape (aiohttp's own 404/405/413 included); an
    unexpected exception is logged and answered 500, and the agent keeps serving."""
    try:
        return await handler(request)
    except APIError as exc:
        if exc.status_code >= 400:
            log.info(
                "%s %s from %s: %s %s",
                request.method,
                request.rel_url,
                _peer(request),
                exc.status_code,
                exc.message,
            )
        raise
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
        log.info(
            "%s %s from %s: %s %s",
            request.method,
            request.rel_url,
            _peer(request),
            exc.status_code,
            message,
        )
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        raise api_error(exc.status_code, code, message, headers) from None
    except Exception:
        log.exception(
            "internal error on %s %s from %s", request.method, request.path, _peer(request)
        )
        raise api_error(500, "internal", "internal error; see the agent log") from None

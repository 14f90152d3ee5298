"""One JSON error shape for the whole API:

    {"error": {"code": "invalid", "message": "...",
               "fields": {"name": [{"code": ..., "message": ...}]}}}

`fields` appears for validation errors only; `code` is stable and meant for scripts.
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.views import exception_handler

from portal.exceptions import StateConflict


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The change conflicts with the current state."
    default_code = "conflict"


def _from_django_validation(exc: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(exc, "error_dict"):
        detail = {
            ("non_field_errors" if field == "__all__" else field): [
                exceptions.ErrorDetail(m, code=e.code or "invalid")
                for e in errors
                for m in e.messages
            ]
            for field, errors in exc.error_dict.items()
        }
    else:
        detail = {
            "non_field_errors": [
                exceptions.ErrorDetail(m, code=e.code or "invalid")
                for e in exc.error_list
                for m in e.messages
            ]
        }
    return exceptions.ValidationError(detail)


def _fields(details) -> dict:
    if isinstance(details, list):
        return {"non_field_errors": details}
    out = {}
    for field, value in details.items():
        if isinstance(value, dict) and not {"message", "code"} <= set(value):
            for sub, sub_value in _fields(value).items():
                out[f"{field}.{sub}"] = sub_value
        elif isinstance(value, dict):
            out[field] = [value]
        else:
            out[field] = value
    return out


def api_exception_handler(exc, context):
    if isinstance(exc, StateConflict):
        exc = Conflict(exc.messages[0], code=exc.code)
    elif isinstance(exc, DjangoValidationError):
        exc = _from_django_validation(exc)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, ProtectedError | IntegrityError):
        exc = Conflict()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _fields(exc.get_full_details())
        first = next(iter(fields.values()), [{}])
        body = {
            "code": "invalid",
            "message": (first[0] or {}).get("message", "Invalid input."),
            "fields": fields,
        }
    else:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        body = {"code": codes if isinstance(codes, str) else "error", "message": str(exc.detail)}
    response.data = {"error": body}
    return response


def json_not_found(request, exception=None):
    """404 for any unknown URL; API clients get the API's error shape, people get a page."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": {"code": "not_found", "message": "No such endpoint."}}, status=404
        )
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_bad_request(request, exception=None):
    """400s Django raises before DRF sees the request (a bad Host header, a body too large)."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": {"code": "bad_request", "message": "The request could not be understood."}},
            status=400,
        )
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def json_server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": {"code": "server_error", "message": "Internal error."}}, status=500
        )
    from django.views.defaults import server_error

    return server_error(request)


__all__ = ["api_exception_handler", "Conflict"]

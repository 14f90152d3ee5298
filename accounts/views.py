"""Tokens and audit pages. Login and logout are Django's own views (see accounts/urls.py)."""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import viewer_required
from accounts.forms import AuditFilter, TokenForm
from accounts.models import ApiToken, AuditEvent
from accounts.services import create_token, revoke_token

PAGE_SIZE = 50
_ABSENT = object()


@viewer_required
@require_http_methods(["GET", "POST"])
def token_list(request):
    form = TokenForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            token, secret = create_token(request.user, name=form.cleaned_data["name"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            # The secret exists only in this response: it is never stored, so never redirect.
            response = render(
                request, "accounts/token_created.html", {"token": token, "secret": secret}
            )
            response["Cache-Control"] = "no-store"
            return response
    page = Paginator(request.user.api_tokens.all(), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "accounts/token_list.html", {"form": form, "page": page})


@viewer_required
@require_POST
def token_revoke(request, pk):
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    revoke_token(request.user, token)
    messages.success(request, f"Token “{token.name}” is revoked; scripts using it are locked out.")
    return redirect("token-list")


def _shown(value) -> str:
    if value is _ABSENT:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def changed_fields(event: AuditEvent) -> list[dict]:
    """The keys an event changed, with old and new values; all keys for a create or delete."""
    before, after = event.before or {}, event.after or {}
    keys = sorted(set(before) | set(after))
    if event.before is not None and event.after is not None:
        keys = [k for k in keys if before.get(k, _ABSENT) != after.get(k, _ABSENT)]
    return [
        {
            "field": key,
            "before": _shown(before.get(key, _ABSENT)),
            "after": _shown(after.get(key, _ABSENT)),
        }
        for key in keys
    ]


@viewer_required
def audit_list(request):
    filters = AuditFilter(request.GET or None, queryset=AuditEvent.objects.all())
    page = Paginator(filters.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    for event in page:
        event.changes = changed_fields(event)
    return render(request, "accounts/audit_list.html", {"filters": filters, "page": page})

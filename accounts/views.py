"""Tokens, audit and users pages. Login and logout are Django's own views (see
accounts/urls.py); so, underneath, is the page a set-password link opens."""

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.views import PasswordResetConfirmView
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services
from accounts.decorators import admin_required, any_mirror_required, viewer_required
from accounts.forms import AuditFilter, ChoosePasswordForm, TokenForm, UserCreateForm, UserRoleForm
from accounts.models import ApiToken, AuditEvent
from accounts.roles import NO_ROLE
from accounts.services import create_token, revoke_token

User = get_user_model()

PAGE_SIZE = 50
_ABSENT = object()


@any_mirror_required
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


@any_mirror_required
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


# --- Users (admin role) -----------------------------------------------------------------------
@admin_required
def user_list(request):
    users = User.objects.prefetch_related("groups").order_by("username")
    page = Paginator(users, PAGE_SIZE).get_page(request.GET.get("page"))
    for user in page:
        user.role = services.held_role(user)
    return render(request, "accounts/user_list.html", {"page": page})


def _show_refusal(form, exc: ValidationError):
    """Put a service's refusal next to the field it names, or above the form if it has none."""
    by_field = exc.error_dict if hasattr(exc, "error_dict") else {None: exc.error_list}
    for field, errors in by_field.items():
        form.add_error(field if field in form.fields else None, errors)


def _show_invitation(request, user, token):
    """The set-password link, shown once: nothing stores it, so never redirect to this page."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    link = request.build_absolute_uri(reverse("user-set-password", args=[uid, token]))
    context = {
        "shown": user,
        "link": link,
        "valid_days": settings.PASSWORD_RESET_TIMEOUT // 86400,
    }
    response = render(request, "accounts/user_invited.html", context)
    response["Cache-Control"] = "no-store"
    return response


@admin_required
@require_http_methods(["GET", "POST"])
def user_create(request):
    form = UserCreateForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            user = services.create_user(
                request.user,
                username=data["username"],
                password=data["password"] or None,
                role=data["role"],
                email=data["email"],
            )
        except ValidationError as exc:
            _show_refusal(form, exc)
        else:
            if user.has_usable_password():
                messages.success(request, f"{user.username} can log in now as {data['role']}.")
                return redirect("user-detail", pk=user.pk)
            return _show_invitation(request, user, services.invite_user(request.user, user))
    return render(request, "accounts/user_create.html", {"form": form})


@admin_required
@require_http_methods(["GET", "POST"])
def user_detail(request, pk):
    user = get_object_or_404(User, pk=pk)
    form = UserRoleForm(request.POST if request.method == "POST" else None, user=user)
    if form.is_bound and form.is_valid():
        role = form.cleaned_data["role"]
        if role == (services.held_role(user) or NO_ROLE):
            messages.info(request, f"{user.username} already is {role}; nothing changed.")
            return redirect("user-detail", pk=user.pk)
        try:
            services.update_user(request.user, user, role=role)
        except ValidationError as exc:
            _show_refusal(form, exc)
        else:
            messages.success(request, f"{user.username} now holds {role} portal-wide.")
            return redirect("user-detail", pk=user.pk)
    context = {
        "shown": user,
        "role": services.held_role(user),
        "form": form,
        "mirror_roles": user.mirror_roles.select_related("mirror").order_by("mirror__name"),
    }
    return render(request, "accounts/user_detail.html", context)


@admin_required
@require_POST
def user_set_active(request, pk, active: bool):
    user = get_object_or_404(User, pk=pk)
    if user.is_active == active:
        messages.info(request, f"{user.username} already is {'active' if active else 'inactive'}.")
        return redirect("user-detail", pk=user.pk)
    try:
        services.update_user(request.user, user, is_active=active)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        done = "can log in again" if active else "can no longer log in or use their API tokens"
        messages.success(request, f"{user.username} {done}.")
    return redirect("user-detail", pk=user.pk)


@admin_required
@require_POST
def user_invite(request, pk):
    user = get_object_or_404(User, pk=pk)
    try:
        token = services.invite_user(request.user, user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("user-detail", pk=user.pk)
    return _show_invitation(request, user, token)


class ChoosePasswordView(PasswordResetConfirmView):
    """Where a set-password link leads: Django's password-reset page, narrowed to invitations
    (an active user without a password yet), saving through the service so it is audited."""

    form_class = ChoosePasswordForm
    template_name = "accounts/user_set_password.html"
    success_url = reverse_lazy("login")

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        if user is None or not user.is_active or user.has_usable_password():
            return None
        return user

    def form_valid(self, form):
        messages.success(self.request, "Your password is set. Log in with it now.")
        return super().form_valid(form)

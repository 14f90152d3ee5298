"""The alerts page: what the rules found (monitor/alerts.py), open ones first, and the button
an operator presses to say that someone looks after one."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import F
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.decorators import any_mirror_required, check_mirror_role
from accounts.roles import OPERATOR, has_role_on, scope
from monitor.alerts import acknowledge_alert
from monitor.models import Alert

PAGE_SIZE = 50
SHOW = ("open", "all")


def listed_alerts(user, show: str):
    """The alerts of the mirrors the user sees: open ones newest first; with "all", the resolved
    ones after them, latest first."""
    alerts = scope(Alert.objects, user).select_related("mirror", "acknowledged_by")
    if show == "open":
        return alerts.filter(resolved_at=None).order_by("-opened_at", "-id")
    return alerts.order_by(F("resolved_at").desc(nulls_first=True), "-opened_at", "-id")


@any_mirror_required
def alert_list(request):
    show = request.GET.get("show")
    show = show if show in SHOW else "open"
    page = Paginator(listed_alerts(request.user, show), PAGE_SIZE).get_page(request.GET.get("page"))
    for alert in page:
        alert.can_acknowledge = has_role_on(request.user, alert.mirror_id, OPERATOR)
    open_count = scope(Alert.objects, request.user).filter(resolved_at=None).count()
    return render(
        request, "monitor/alert_list.html", {"page": page, "show": show, "open_count": open_count}
    )


@any_mirror_required
@require_POST
def alert_acknowledge(request, pk):
    alert = get_object_or_404(Alert.objects.select_related("mirror"), pk=pk)
    check_mirror_role(request, alert.mirror_id, OPERATOR)
    try:
        acknowledge_alert(request.user, alert)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Acknowledged: {alert.text}")
    return redirect(back_to(request))


def back_to(request) -> str:
    """The page the button was on (the alert list with its filter, a mirror's monitor), if it
    is one of ours; the alert list otherwise."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return "alert-list"

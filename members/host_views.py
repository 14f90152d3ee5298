"""The host pages: the hosts the portal knows, one host's instances as its agent last
reported them (with how long their certificates have left), and a check that reads them again."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.decorators import operator_required, viewer_required
from accounts.roles import OPERATOR, has_role
from members import actions, rules
from members.models import Host
from members.pages import PAGE_SIZE


@viewer_required
def host_list(request):
    hosts = Host.objects.annotate(member_count=Count("members")).order_by("name")
    page = Paginator(hosts, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "members/host_list.html", {"page": page})


@operator_required
@require_POST
def check_host(request, pk):
    host = get_object_or_404(Host, pk=pk)
    job = actions.check_host(request.user, host)
    messages.info(request, f"Checking host {host.name}.")
    return redirect("job-detail", pk=job.pk)


@viewer_required
def host_detail(request, pk):
    host = get_object_or_404(Host, pk=pk)
    now = timezone.now()
    instances = list(host.instances.all())
    for found in instances:
        found.expiry, found.expiry_level = _expiry(found.certificate_not_after, now)
        found.type_label = dict(rules.MEMBER_TYPES).get(found.member_type, found.member_type)
    context = {
        "host": host,
        "instances": instances,
        "members": host.members.select_related("mirror").order_by("mirror__name", "name"),
        "can_operate": has_role(request.user, OPERATOR),
    }
    return render(request, "members/host_detail.html", context)


def _expiry(not_after, now) -> tuple[str, str]:
    """A certificate's days left in words, and how urgent: bad when expired or under 14 days,
    warn under 30, ok otherwise."""
    if not_after is None:
        return "", ""
    days = (not_after - now).days
    level = "bad" if days < 14 else "warn" if days < 30 else "ok"
    if days < 0:
        return f"Expired {-days} day{pluralize(-days)} ago", level
    return f"{days} day{pluralize(days)} left", level

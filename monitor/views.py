"""The live pages: the Mirror Monitor of one mirror (guide §5.1.1), kept current over a
websocket (static/js/monitor.js); the fleet overview, which is the Mirrors page
(members.views.mirror_list calls fleet_rows); the timeline of every mirror's events.

Each page is complete without JavaScript: the server renders what `mirror_status()` and the
fleet rows hold, and the scripts then keep the same elements current (docs/monitor-pages.md).
"""

import django_filters
from django import forms
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Prefetch, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from accounts.decorators import any_mirror_required, may
from accounts.roles import ADMIN, OPERATOR, has_role_on, scope
from engine import rules as catalog
from members import failover_buttons
from members.access import mirror_viewer_required, roles_on_whole_instances
from members.api.filters import DateTimeFilter
from members.forms import COPY_ACTIONS
from members.health import mirror_health
from members.models import DatabaseCopy, Member, Mirror
from monitor.api.serializers import mirror_status
from monitor.models import Alert, Event, MemberState
from portal.filters import FilterSet, TextFilter

RECENT_EVENTS = 20
TIMELINE_PAGE_SIZE = 50

# A member's colour (static/js/monitor.js has the same three lists): green when it does its
# job, amber while it gets there, red when it cannot (guide §5.1.1.1).
OK_STATUSES = {catalog.PRIMARY, catalog.BACKUP, catalog.CONNECTED}
WARN_STATUSES = {catalog.SYNCHRONIZING, catalog.TRANSITION, catalog.WAITING}
BAD_STATUSES = {catalog.DOWN, catalog.ERROR, catalog.CRASHED, catalog.STOPPED, catalog.IN_TROUBLE}


def status_level(status: str, agent_reachable) -> str:
    if agent_reachable is False:  # the status shown is stale: we cannot know it is fine
        return "bad"
    if status in OK_STATUSES:
        return "ok"
    if status in WARN_STATUSES:
        return "warn"
    if status in BAD_STATUSES:
        return "bad"
    return "unknown"


def next_record(position, on_primary: bool) -> str:
    """ "Next Record to Dejournal" (guide §5.1.1.3): N/A on the primary; elsewhere the journal
    position the copy has applied up to, [file, offset] as the member reports it."""
    if on_primary:
        return catalog.NOT_APPLICABLE
    if isinstance(position, list | tuple) and len(position) == 2:
        return f"{position[0]}:{position[1]}"
    return str(position) if position else "—"


def lag_text(seconds) -> str:
    """A lag as the fleet overview and the charts' legend show it (fleet.js: lagText)."""
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    return f"{s} s" if s < 120 else f"{s // 60} min {s % 60} s"


def present(status: dict) -> dict:
    """What the Mirror Monitor template shows beside `status`: each member's colour, rate,
    databases and troubles, and the primary's pending members and DN updates."""
    members = []
    primary_record = {}
    for m in status["members"]:
        record = m["record"] or {}
        on_primary = m["status"] in (catalog.PRIMARY, catalog.IN_TROUBLE)
        if on_primary and not primary_record:
            primary_record = record
        members.append(
            {
                **m,
                "level": status_level(m["status"], m["agent_reachable"]),
                "on_primary": on_primary,
                "rate": None if on_primary else record.get("incoming_journal_rate"),
                "missing": record.get("missing_mirrored_databases") or [],
                "waiting_reason": record.get("waiting_reason") or "",
                "databases": [
                    {
                        "name": db.get("name", ""),
                        "status": db.get("status", ""),
                        "next": next_record(db.get("applied"), on_primary),
                    }
                    for db in record.get("databases") or []
                ],
            }
        )
    return {
        "members": members,
        "waiting": any(m["waiting_reason"] for m in members),
        "missing": any(m["missing"] for m in members),
        "pending": pending_members(status, primary_record),
        "dn_updates": [
            {**u, "cert": certificate_text(u)} for u in primary_record.get("dn_updates") or []
        ],
        "alerts": [{**a, "when": when(a["opened_at"])} for a in status["alerts"]],
    }


def when(iso) -> str:
    """An ISO time of the API's JSON as the pages show it, "2025-01-31 12:00:00" (UTC)."""
    return str(iso or "")[:19].replace("T", " ")


def certificate_text(row: dict) -> str:
    """The certificate the primary saw asking (its issuer and SHA-256), to compare with the
    member's real certificate before authorizing (static/js/monitor.js writes the same)."""
    if not row.get("fingerprint"):
        return ""
    return f"{row.get('issuer') or '?'} · SHA-256 {row['fingerprint']}"


def pending_members(status: dict, primary_record: dict) -> list[dict]:
    """Members waiting for authorization: as the primary reports them, and those the portal
    recorded as pending that the primary's report does not name (it may be unreachable)."""
    rows = [
        {
            "name": p.get("name", ""),
            "type": catalog.MEMBER_TYPE_LABELS.get(p.get("type"), p.get("type") or ""),
            "dn": p.get("dn") or "",
            "cert": certificate_text(p),
        }
        for p in primary_record.get("pending_members") or []
    ]
    named = {r["name"] for r in rows}
    rows += [
        {"name": m["name"], "type": m["type"], "dn": m["x509_dn"], "cert": ""}
        for m in status["members"]
        if m["authorization"] == Member.PENDING and m["name"] not in named
    ]
    return rows


def operations(mirror, user) -> list[Member]:
    """The mirror's members with the failover buttons an operator may press on each (a graceful
    stop, no failover; forcing a primary, promoting and demoting, promoting a DR async to
    primary and clearing ValidatedMember for admins), chosen from what they last reported."""
    if not has_role_on(user, mirror.pk, OPERATOR):
        return []
    from members.failover_actions import can_demote, can_promote

    members = list(mirror.members.order_by("member_type", "name"))
    roles_on_whole_instances(user, mirror, members)
    for member in members:
        member.switches = failover_buttons.failover_switches(mirror, member)
        member.can_force = failover_buttons.can_force(member)
        member.can_rebuild = failover_buttons.can_rebuild(member)
        member.can_promote, member.can_demote = can_promote(member), can_demote(member)
        member.can_promote_to_primary = failover_buttons.can_promote_to_primary(member, members)
        member.can_clear_validated = failover_buttons.can_clear_validated(member)
    return members


def copy_forms(mirror, user) -> dict:
    """For an operator, each member's form acting on its selected databases (guide §5.1.1.3):
    where it posts and the copy behind each database name (members.database_views)."""
    if not has_role_on(user, mirror.pk, OPERATOR):
        return {}
    by_member = {
        m.name: {"action": reverse("member-copies", args=[mirror.name, m.pk]), "copies": {}}
        for m in mirror.members.all()
    }
    copies = DatabaseCopy.objects.filter(member__mirror=mirror).select_related("member", "database")
    for copy in copies:
        by_member[copy.member.name]["copies"][copy.database.name] = copy.pk
    return by_member


@mirror_viewer_required
def mirror_monitor(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    status = mirror_status(mirror)
    copy_form = copy_forms(mirror, request.user)
    view = present(status)
    for member in view["members"]:
        member["form"] = form = copy_form.get(member["name"])
        for db in member["databases"] if form else ():
            db["copy"] = form["copies"].get(db["name"])
    context = {
        "mirror": mirror,
        "status": status,
        "view": view,
        "copy_actions": COPY_ACTIONS,
        "operations": operations(mirror, request.user),
        "can_admin": may(request, mirror.pk, ADMIN),
        "can_operate": may(request, mirror.pk, OPERATOR),
        "events": Event.objects.filter(mirror=mirror)[:RECENT_EVENTS],
        # what monitor.js needs that the status does not say
        "page_config": {
            "mirror": mirror.name,
            "socket": f"/ws/mirrors/{mirror.name}/",
            "samples": reverse("mirror-samples", args=[mirror.name]),
            "copies": reverse("mirror-detail", args=[mirror.name]),
            "copyForms": copy_form,
            "copyActions": COPY_ACTIONS,
            "timeline": reverse("timeline"),
            "canOperate": may(request, mirror.pk, OPERATOR),
            "typeLabels": catalog.MEMBER_TYPE_LABELS,
        },
    }
    return render(request, "monitor/mirror_monitor.html", context)


# --- The fleet overview (the Mirrors page) ----------------------------------------------------
def with_fleet_data(mirrors):
    """`mirrors` (a queryset) with what their fleet rows need: the open alerts counted, the
    members with their live state, so fleet_rows() makes no query of its own."""
    open_alerts = (
        Alert.objects.filter(mirror=OuterRef("pk"), resolved_at=None)
        .order_by()
        .values("mirror")
        .annotate(n=Count("pk"))
        .values("n")
    )
    # a subquery, not a join: members x alerts rows would multiply the page's member counts
    return mirrors.annotate(open_alerts=Coalesce(Subquery(open_alerts), 0)).prefetch_related(
        Prefetch("members", queryset=Member.objects.select_related("live"))
    )


def _live(member):
    try:
        return member.live
    except MemberState.DoesNotExist:
        return None


def fleet_rows(mirrors) -> list:
    """`mirrors` (from with_fleet_data) worst first, each with `.fleet`: the same row as
    monitor.api.serializers.fleet_row() builds with queries of its own (a test keeps the two
    equal). A mirror's `.health`, when the caller set it, is used as is."""
    for mirror in mirrors:
        members = list(mirror.members.all())
        health = getattr(mirror, "health", None) or mirror_health(members)
        primary = next(
            (m.name for m in members if m.status in (catalog.PRIMARY, catalog.IN_TROUBLE)), None
        )
        backup = next((m for m in members if m.status == catalog.BACKUP), None)
        backup_live = _live(backup) if backup is not None else None
        lags = [
            live.transfer_lag_s
            for live in (_live(m) for m in members if m.member_type != catalog.FAILOVER)
            if live is not None and live.transfer_lag_s is not None
        ]
        mirror.health = health
        mirror.fleet = {
            "mirror": mirror.name,
            "url": reverse("mirror-monitor", args=[mirror.name]),
            "health": {"level": health.level, "text": health.text},
            "rank": {"bad": 0, "warn": 1, "unknown": 2, "ok": 3}[health.level],
            "primary": primary,
            "backup": backup.name if backup else None,
            "backup_active": bool(backup_live and backup_live.journal_transfer == catalog.ACTIVE),
            "worst_async_lag_s": max(lags) if lags else None,
            "open_alerts": mirror.open_alerts,
            "members": len(members),
            "down": sum(
                1 for m in members if m.status in (catalog.DOWN, catalog.ERROR, catalog.CRASHED)
            ),
        }
        mirror.lag_text = lag_text(mirror.fleet["worst_async_lag_s"])
    rows = list(mirrors)
    rows.sort(key=lambda m: (m.fleet["rank"], -m.fleet["open_alerts"], m.name))
    return rows


# --- The timeline -----------------------------------------------------------------------------
class DateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"


class EventFilter(FilterSet):
    mirror = TextFilter(field_name="mirror_name", lookup_expr="iexact", label="Mirror")
    member = TextFilter(field_name="member_name", lookup_expr="iexact", label="Member")
    kind = django_filters.ChoiceFilter(choices=Event.KINDS, empty_label="Any", label="Kind")
    since = DateTimeFilter(
        field_name="at", lookup_expr="gte", label="From (UTC)", widget=DateTimeInput
    )
    until = DateTimeFilter(
        field_name="at", lookup_expr="lte", label="To (UTC)", widget=DateTimeInput
    )

    class Meta:
        model = Event
        fields = []

    def clean_range(self):
        data = self.form.cleaned_data
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.form.add_error("until", "The end of the range comes before its start.")


@any_mirror_required
def timeline(request):
    filters = EventFilter(request.GET or None, queryset=scope(Event.objects, request.user))
    valid = not filters.is_bound or filters.is_valid()
    if valid and filters.is_bound:
        filters.clean_range()
        valid = not filters.form.errors
    # A filter that cannot be read shows nothing rather than everything: a wrong page that
    # looks filtered is worse than an empty one that says why.
    events = filters.qs if valid else Event.objects.none()
    page = Paginator(events, TIMELINE_PAGE_SIZE).get_page(request.GET.get("page"))
    chosen = filters.form.cleaned_data if valid and filters.is_bound else {}
    # New events are added live only to one mirror's newest page with no end to the range.
    name = chosen.get("mirror") or ""
    follows = name.isalnum() and not chosen.get("until") and page.number == 1
    context = {
        "filters": filters,
        "valid": valid,
        "page": page,
        "live": {
            "mirror": name.upper(),
            "member": chosen.get("member") or "",
            "kind": chosen.get("kind") or "",
            "socket": f"/ws/mirrors/{name.upper()}/",
            "monitor": reverse("mirror-monitor", args=[name.upper()]),
            "audit": reverse("audit-list"),
            "kinds": dict(Event.KINDS),
        }
        if follows
        else None,
    }
    return render(request, "monitor/timeline.html", context, status=200 if valid else 400)

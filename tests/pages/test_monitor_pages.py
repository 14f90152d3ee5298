"""The live pages as the server renders them, before any script runs: the Mirror Monitor with
the guide's strings (guide §5.1.1) from the members' live state, the fleet overview on the
Mirrors page, and the timeline with its filters."""

import datetime
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from members.models import Member
from monitor.api.serializers import fleet
from monitor.models import Alert, Event, MemberState
from tasks.services import start_job
from tests import factories

pytestmark = pytest.mark.django_db

RATE = "42345 KB/s (22s interval)"
COMPRESSED_RATE = "14288 KB/s network; 39687 KB/s journal; ratio 2.78:1 (143s interval)"
FIRST_RATE = "--- (will be displayed on refresh)"
BOTH = "Both failover members are connected to the arbiter"


def seen(member, status, *, reachable=True, journal_transfer="", dejournaling="", **record):
    """`member` as its agent last streamed it: the live row and the member's own status."""
    now = timezone.now()
    Member.objects.filter(pk=member.pk).update(status=status, observed_at=now)
    MemberState.objects.update_or_create(
        member=member,
        defaults={
            "agent_reachable": reachable,
            "status": status,
            "journal_transfer": journal_transfer,
            "dejournaling": dejournaling,
            "transfer_lag_s": record.pop("transfer_lag_s", None),
            "record": record,
            "seen_at": now,
            "changed_at": now,
        },
    )


@pytest.fixture
def alpha():
    """ALPHA: primary A, backup B, DR member FARDR and a reporting member REPORTS, on TLS."""
    mirror = factories.mirror(name="ALPHA", arbiter_host="10.9.9.9", arbiter_port=2188)
    a = factories.member(mirror, name="A", mirror_private_address="192.168.1.1")
    b = factories.member(mirror, name="B", authorization="authorized", x509_dn="CN=B,O=Example")
    dr = factories.member(mirror, name="FARDR", member_type="dr", authorization="authorized")
    rep = factories.member(
        mirror, name="REPORTS", member_type="ro_reporting", authorization="authorized"
    )
    seen(
        a,
        "Primary",
        journal_transfer="N/A",
        dejournaling="N/A",
        failover_mode="Arbiter Controlled",
        arbiter_connection=BOTH,
        databases=[{"name": "SALES", "status": "Normal", "applied": [3, 1024]}],
        pending_members=[{"name": "NEWDR", "type": "dr", "dn": "CN=NEWDR,O=Example"}],
        dn_updates=[{"member": "B", "dn": "CN=B-renewed,O=Example"}],
    )
    seen(
        b,
        "Backup",
        journal_transfer="Active",
        dejournaling="Caught up",
        incoming_journal_rate=RATE,
        arbiter_connection=BOTH,
        databases=[{"name": "SALES", "status": "Dejournaling", "applied": [3, 1000]}],
        missing_mirrored_databases=["HR"],
    )
    seen(
        dr,
        "Connected",
        journal_transfer="12 seconds behind",
        dejournaling="Caught up",
        incoming_journal_rate=COMPRESSED_RATE,
        transfer_lag_s=12.0,
    )
    seen(
        rep,
        "Waiting",
        incoming_journal_rate=FIRST_RATE,
        waiting_reason="mirror private address 10.1.1.1 is not an address of this host",
    )
    return mirror


def monitor_page(client):
    response = client.get(reverse("mirror-monitor", args=["alpha"]))  # any case
    assert response.status_code == 200
    return response.text


def member_table(html):
    """The Mirror Member Status table alone (other sections have rows per member too)."""
    start = html.index('class="member-status"')
    return html[start : html.index("</table>", start)]


def row(html, member):
    found = re.search(rf'<tr data-member="{member}"[^>]*>(.*?)</tr>', html, re.S)
    assert found, f"no row for {member}"
    return found.group(0)


def field(fragment, name):
    found = re.search(rf'data-field="{name}"[^>]*>([^<]*)<', fragment)
    assert found, f"no {name} in {fragment[:200]}"
    return found.group(1).strip()


def test_monitor_shows_failover_member_information_and_the_arbiter(client_as, alpha):
    html = monitor_page(client_as("viewer"))
    assert "Failover Member Information" in html
    a = row(html, "A")
    assert field(a, "superserver").endswith("|1972")
    assert field(a, "private") == "192.168.1.1"
    assert "Arbiter Connection Status" in html
    assert field(html, "arbiter-address") == "10.9.9.9|2188"
    assert field(html, "failover-mode") == "Arbiter Controlled"
    assert field(html, "arbiter-connection") == BOTH


def test_monitor_lists_every_member_with_type_status_journal_transfer_and_dejournaling(
    client_as, alpha
):
    html = monitor_page(client_as("viewer"))
    assert "Mirror Member Status" in html
    table = member_table(html)
    for heading in ("Member Name", "Type", "Status", "Journal Transfer", "Dejournaling"):
        assert f'<th scope="col">{heading}</th>' in table
    assert '<th scope="col">X.509 DN</th>' in table  # the mirror requires TLS
    b = row(table, "B")
    assert (field(b, "type"), field(b, "status")) == ("Failover", "Backup")
    assert (field(b, "journal_transfer"), field(b, "dejournaling")) == ("Active", "Caught up")
    assert field(b, "x509_dn") == "CN=B,O=Example"
    dr = row(table, "FARDR")
    assert field(dr, "type") == "Disaster Recovery"
    assert field(dr, "journal_transfer") == "12 seconds behind"


def test_without_tls_the_member_table_has_no_dn_column(client_as):
    mirror = factories.mirror(name="PLAIN", requires_tls=False)
    seen(factories.member(mirror, name="P"), "Primary")
    html = client_as("viewer").get(reverse("mirror-monitor", args=["PLAIN"])).text
    assert "X.509 DN" not in member_table(html)


def test_each_member_row_is_coloured_by_its_status(client_as, alpha):
    table = member_table(monitor_page(client_as("viewer")))
    assert 'data-member="A" data-level="ok"' in table
    assert 'data-member="B" data-level="ok"' in table
    assert 'data-member="REPORTS" data-level="warn"' in table  # Waiting
    seen(Member.objects.get(name="B"), "Down")
    assert 'data-member="B" data-level="bad"' in member_table(monitor_page(client_as("viewer")))


def test_a_member_whose_agent_is_unreachable_is_red_and_says_so(client_as, alpha):
    seen(Member.objects.get(name="FARDR"), "Connected", reachable=False)
    table = member_table(monitor_page(client_as("viewer")))
    dr = row(table, "FARDR")
    assert 'data-level="bad"' in dr
    assert '<span class="unreachable" data-field="agent">agent unreachable</span>' in dr
    # the others say nothing of the kind
    assert 'data-field="agent" hidden' in row(table, "A")


def test_incoming_journal_rates_are_the_members_own_strings_for_non_primaries(client_as, alpha):
    html = monitor_page(client_as("viewer"))
    rates = html[html.index("Incoming Journal Transfer Rate") :]
    rates = rates[: rates.index("</section>")]
    assert f'data-member="B" data-field="rate">{RATE}<' in rates
    assert f'data-member="FARDR" data-field="rate">{COMPRESSED_RATE}<' in rates
    assert f'data-member="REPORTS" data-field="rate">{FIRST_RATE}<' in rates
    assert 'data-member="A"' not in rates  # the primary receives no journal


def test_missing_mirrored_databases_are_reported_per_member(client_as, alpha):
    html = monitor_page(client_as("viewer"))
    assert "Missing Mirrored Databases" in html
    assert '<strong>B</strong> lacks <span data-field="missing">HR</span>' in html


def test_databases_per_member_show_next_record_to_dejournal_na_on_the_primary(client_as, alpha):
    html = monitor_page(client_as("viewer"))
    assert "Next Record to Dejournal" in html

    def database_row(member):
        block = re.search(
            rf'class="member-databases" data-member="{member}".*?</table>', html, re.S
        )
        return row(block.group(0).replace('data-database="SALES"', 'data-member="SALES"'), "SALES")

    assert (field(database_row("A"), "status"), field(database_row("A"), "next")) == (
        "Normal",
        "N/A",
    )
    assert (field(database_row("B"), "status"), field(database_row("B"), "next")) == (
        "Dejournaling",
        "3:1000",
    )


def test_operators_select_a_members_databases_and_act_on_them_viewers_cannot(client_as, alpha):
    b = Member.objects.get(name="B")
    sales = factories.copy(factories.database(alpha, name="SALES"), b, status="Dejournaling")
    action = reverse("member-copies", args=["ALPHA", b.pk])

    operator, viewer = monitor_page(client_as("operator")), monitor_page(client_as("viewer"))

    block = re.search(r'"member-databases" data-member="B">.*?</form>', operator, re.S).group(0)
    assert f'<form method="post" action="{action}" data-select-copies>' in block
    assert f'name="copies" value="{sales.pk}"' in block
    assert 'name="back" value="monitor"' in block and '<option value="catchup">' in block
    assert "data-select-copies" not in viewer and 'name="copies"' not in viewer


def test_the_selected_databases_action_started_from_the_monitor_comes_back_to_it(client_as, alpha):
    b = Member.objects.get(name="B")
    factories.copy(factories.database(alpha, name="SALES"), b)
    action = reverse("member-copies", args=["ALPHA", b.pk])

    nothing = client_as("operator").post(action, {"action": "catchup", "back": "monitor"})

    assert nothing["Location"] == reverse("mirror-monitor", args=["ALPHA"])


def test_a_waiting_members_reason_is_shown_in_its_own_panel(client_as, alpha):
    html = monitor_page(client_as("viewer"))
    panel = html[html.index('data-section="waiting"') :]
    assert not panel.split(">", 1)[0].endswith(" hidden")
    assert "not an address of this host" in panel[: panel.index("</section>")]


def test_the_waiting_panel_is_hidden_when_nobody_waits(client_as, alpha):
    seen(Member.objects.get(name="REPORTS"), "Connected")
    html = monitor_page(client_as("viewer"))
    assert re.search(r'data-section="waiting" class="panel-bad" hidden', html)


def test_pending_members_and_dn_updates_come_from_the_primarys_report(client_as, alpha):
    html = monitor_page(client_as("viewer"))
    assert '<tr data-pending="NEWDR"><th scope="row">NEWDR</th><td>Disaster Recovery</td>' in html
    assert "CN=B-renewed,O=Example" in html


def test_open_alerts_are_listed_and_resolved_ones_are_not(client_as, alpha):
    now = timezone.now()
    Alert.objects.create(
        mirror=alpha, rule="async_lag", key="a", text="FARDR lags 12 s", opened_at=now
    )
    Alert.objects.create(
        mirror=alpha, rule="member_down", key="b", text="B was down", opened_at=now, resolved_at=now
    )
    html = monitor_page(client_as("viewer"))
    assert "FARDR lags 12 s" in html
    assert "B was down" not in html


def test_the_page_carries_its_snapshot_and_the_live_indicator(client_as, alpha):
    html = monitor_page(client_as("viewer"))
    assert '<script id="monitor-status" type="application/json">' in html
    assert "data-live" in html and "/static/js/monitor.js" in html
    assert "/static/vendor/uplot-1.6.32/uPlot.iife.min.js" in html
    assert "https://" not in html  # nothing loaded from outside


def test_viewers_see_the_monitor_anonymous_visitors_are_sent_to_log_in(client_as, alpha):
    url = reverse("mirror-monitor", args=["ALPHA"])
    assert client_as("viewer").get(url).status_code == 200
    response = client_as("anonymous").get(url)
    assert response.status_code == 302 and response["Location"] == f"/login/?next={url}"
    assert client_as("norole").get(url).status_code == 403
    assert client_as("viewer").get(reverse("mirror-monitor", args=["NOSUCH"])).status_code == 404


def test_the_mirror_page_links_to_its_monitor(client_as, alpha):
    html = client_as("viewer").get(reverse("mirror-detail", args=["ALPHA"])).text
    assert f'href="{reverse("mirror-monitor", args=["ALPHA"])}">Monitor</a>' in html


# --- The fleet overview ---------------------------------------------------------------------
def test_the_mirrors_page_lists_the_fleet_worst_first_as_the_websocket_does(client_as, alpha):
    bravo = factories.mirror(name="BRAVO", requires_tls=False)
    seen(factories.member(bravo, name="P"), "Primary")
    down = factories.mirror(name="CHARLIE", requires_tls=False)
    seen(factories.member(down, name="C1"), "Down")
    html = client_as("viewer").get(reverse("mirror-list")).text
    order = re.findall(r'<tr data-mirror="(\w+)"', html)
    assert order == [r["mirror"] for r in fleet()] == ["CHARLIE", "ALPHA", "BRAVO"]


def test_each_fleet_row_matches_the_websockets_fleet_row(client_as, alpha):
    Alert.objects.create(mirror=alpha, rule="x", key="k", text="t", opened_at=timezone.now())
    response = client_as("viewer").get(reverse("mirror-list"))
    (row_on_page,) = [m.fleet for m in response.context["page"]]
    assert row_on_page == fleet()[0]
    alpha_row = row(response.text.replace("data-mirror=", "data-member="), "ALPHA")
    assert field(alpha_row, "primary") == "A"
    assert "B <span" in alpha_row and ">Active</span>" in alpha_row
    assert field(alpha_row, "lag") == "12 s"  # FARDR's transfer lag
    assert '<strong class="badge bad">1</strong>' in alpha_row
    assert f'href="{reverse("mirror-monitor", args=["ALPHA"])}"' in alpha_row


def test_the_mirrors_page_follows_the_fleet_websocket(client_as, alpha):
    html = client_as("viewer").get(reverse("mirror-list")).text
    assert 'data-socket="/ws/fleet/"' in html and "/static/js/fleet.js" in html


# --- The timeline ---------------------------------------------------------------------------
def event(mirror, kind, text, *, member="", minutes_ago=0, job=None):
    at = timezone.now() - datetime.timedelta(minutes=minutes_ago)
    return Event.objects.create(
        mirror=mirror,
        mirror_name=mirror.name,
        member_name=member,
        kind=kind,
        text=text,
        at=at,
        job=job,
    )


@pytest.fixture
def history(alpha, admin_user):
    other = factories.mirror(name="OTHER", requires_tls=False)
    job = start_job(admin_user, "check_host", Member.objects.get(name="A").host)
    return {
        "old": event(alpha, "status", "B went Down", member="B", minutes_ago=90),
        "mid": event(alpha, "journal_transfer", "B Active again", member="B", minutes_ago=30),
        "job": event(alpha, "job", "check_host started", minutes_ago=10, job=job),
        "other": event(other, "status", "P went Primary", member="P", minutes_ago=5),
        "job_row": job,
    }


def shown(response):
    return [int(i) for i in re.findall(r'<tr data-event="(\d+)"', response.text)]


def test_the_timeline_shows_every_event_newest_first(client_as, history):
    response = client_as("viewer").get(reverse("timeline"))
    assert response.status_code == 200
    ids = [history[k].pk for k in ("other", "job", "mid", "old")]
    assert shown(response) == ids


def test_the_timeline_filters_by_mirror_member_kind_and_time(client_as, history):
    client = client_as("viewer")
    get = lambda **q: shown(client.get(reverse("timeline"), q))  # noqa: E731
    assert get(mirror="other") == [history["other"].pk]  # any case
    assert get(mirror="ALPHA", member="b") == [history["mid"].pk, history["old"].pk]
    assert get(kind="job") == [history["job"].pk]
    since = (timezone.now() - datetime.timedelta(minutes=60)).strftime("%Y-%m-%dT%H:%M")
    until = (timezone.now() - datetime.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M")
    assert get(since=since, until=until) == [history["mid"].pk]


def test_a_timeline_event_links_to_its_job_and_to_that_days_audit(client_as, history):
    html = client_as("viewer").get(reverse("timeline"), {"kind": "job"}).text
    job = history["job_row"]
    assert f'href="{reverse("job-detail", args=[job.pk])}">job #{job.pk}</a>' in html
    day = history["job"].at.strftime("%Y-%m-%d")
    audit = f"{reverse('audit-list')}?object_type=job&amp;date_from={day}&amp;date_to={day}"
    assert f'href="{audit}"' in html
    # and the audit page it opens reads that filter
    assert client_as("viewer").get(audit.replace("&amp;", "&")).status_code == 200


@pytest.mark.parametrize(
    "query, message",
    [
        ({"kind": "nonsense"}, "Select a valid choice"),
        ({"since": "yesterday-ish"}, "Enter a valid date/time"),
        ({"since": "2025-01-02T00:00", "until": "2025-01-01T00:00"}, "comes before its start"),
    ],
)
def test_a_timeline_filter_that_cannot_be_read_says_why_and_shows_nothing(
    client_as, history, query, message
):
    response = client_as("viewer").get(reverse("timeline"), query)
    assert response.status_code == 400
    assert "These filters cannot be read" in response.text
    assert message in response.text
    assert shown(response) == []


def test_the_timeline_is_paginated(client_as, alpha):
    for i in range(55):
        event(alpha, "status", f"change {i}", minutes_ago=i)
    client = client_as("viewer")
    first = client.get(reverse("timeline"))
    assert len(shown(first)) == 50 and "Page 1 of 2" in first.text
    assert len(shown(client.get(reverse("timeline"), {"page": 2}))) == 5


def test_the_timeline_follows_one_mirror_live_only_when_one_is_chosen(client_as, history):
    client = client_as("viewer")
    assert 'id="timeline-live"' not in client.get(reverse("timeline")).text
    html = client.get(reverse("timeline"), {"mirror": "alpha"}).text
    assert 'id="timeline-live"' in html and "/ws/mirrors/ALPHA/" in html


def test_the_timeline_is_for_viewers_and_in_the_navigation(client_as, history):
    url = reverse("timeline")
    response = client_as("anonymous").get(url)
    assert response.status_code == 302 and response["Location"] == f"/login/?next={url}"
    assert client_as("norole").get(url).status_code == 403
    html = client_as("viewer").get(url).text
    assert f'href="{url}" aria-current="page">Timeline</a>' in html


def test_each_pending_request_shows_the_certificate_the_primary_saw_asking(client_as, alpha):
    primary = MemberState.objects.get(status="Primary")
    asked = {"fingerprint": "AB:CD:EF", "issuer": "CN=Mirror CA,O=Example"}
    primary.record["pending_members"][0].update(asked)
    primary.record["dn_updates"][0].update(fingerprint="12:34", issuer="CN=Other CA")
    primary.save()

    html = monitor_page(client_as("viewer"))

    assert "CN=Mirror CA,O=Example · SHA-256 AB:CD:EF" in html
    assert "CN=Other CA · SHA-256 12:34" in html

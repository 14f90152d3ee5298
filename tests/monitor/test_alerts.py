"""The alert rules (monitor/alerts.py) on the live states the collector stores, the alerts page
and the REST endpoints: an alert opens once per trouble, resolves when the trouble is gone, and
an operator (never a viewer) acknowledges it, in the audit trail."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from engine import rules as catalog
from monitor.alerts import acknowledge_alert, evaluate_alerts
from monitor.models import Alert, Event, MemberState
from portal.exceptions import StateConflict
from tests import factories
from tests.conftest import api_client_for

T0 = timezone.now().replace(microsecond=0)


def seconds(n: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=n)


def live(member, *, at=T0, **fields) -> MemberState:
    """`member` as its agent streamed it: the row the collector keeps, changed at `at`."""
    fields.setdefault("status", catalog.CONNECTED)
    state, _ = MemberState.objects.update_or_create(
        member=member, defaults={"seen_at": at, "changed_at": at, **fields}
    )
    return state


class Mirror:
    """ALPHA: primary A, backup B (Active), DR async D (caught up); all healthy."""

    def __init__(self, **mirror_fields):
        self.mirror = factories.mirror(name="ALPHA", requires_tls=False, **mirror_fields)
        self.primary = factories.member(self.mirror, name="A")
        self.backup = factories.member(self.mirror, name="B")
        self.dr = factories.member(self.mirror, name="D", member_type=catalog.DR)
        live(
            self.primary,
            status=catalog.PRIMARY,
            record={
                "failover_mode": catalog.ARBITER_CONTROLLED,
                "arbiter_connection": catalog.ARBITER_BOTH,
            },
        )
        live(self.backup, status=catalog.BACKUP, journal_transfer=catalog.ACTIVE)
        live(self.dr, status=catalog.CONNECTED, journal_transfer="Caught up", transfer_lag_s=0.0)


@pytest.fixture
def alpha(db):
    return Mirror()


def open_alerts(rule=None):
    alerts = Alert.objects.filter(resolved_at=None)
    return list(alerts.filter(rule=rule) if rule else alerts)


# --- Opening once, resolving ------------------------------------------------------------------
def test_a_healthy_mirror_has_no_alert(alpha):
    assert evaluate_alerts(now=seconds(1)) == set()
    assert Alert.objects.count() == 0


def test_a_down_member_opens_one_alert_and_later_evaluations_open_no_other(alpha):
    live(alpha.dr, status=catalog.DOWN)

    changed = evaluate_alerts(now=seconds(1))
    for n in range(2, 6):
        assert evaluate_alerts(now=seconds(n)) == set()

    assert changed == {alpha.mirror.pk}
    [alert] = Alert.objects.all()
    assert (alert.rule, alert.key, alert.member_name) == ("member_down", "member_down:ALPHA:D", "D")
    assert alert.text == "D is Down" and alert.opened_at == seconds(1)
    assert Event.objects.filter(kind=Event.ALERT, after="open").count() == 1


def test_the_alert_resolves_when_the_member_is_back_and_the_history_says_so(alpha):
    live(alpha.dr, status=catalog.ERROR)
    evaluate_alerts(now=seconds(1))

    live(alpha.dr, status=catalog.CONNECTED, at=seconds(2))
    changed = evaluate_alerts(now=seconds(3))

    assert changed == {alpha.mirror.pk}
    alert = Alert.objects.get()
    assert alert.resolved_at == seconds(3) and not alert.is_open
    history = [(e.after, e.text) for e in Event.objects.filter(kind=Event.ALERT).order_by("at")]
    assert history == [("open", "Alert: D is Error"), ("resolved", "Resolved: D is Error")]


def test_a_crashed_primary_is_a_member_down_alert(alpha):
    live(alpha.primary, status=catalog.CRASHED)

    evaluate_alerts(now=seconds(1))

    [alert] = open_alerts("member_down")
    assert alert.member_name == alpha.primary.name and alert.text.endswith("is Crashed")


def test_the_same_trouble_again_later_is_a_new_alert(alpha):
    for n, status in enumerate([catalog.DOWN, catalog.CONNECTED, catalog.DOWN], start=1):
        live(alpha.dr, status=status, at=seconds(n))
        evaluate_alerts(now=seconds(n))

    assert Alert.objects.filter(key="member_down:ALPHA:D").count() == 2
    assert len(open_alerts()) == 1


def test_an_agent_that_cannot_be_reached_counts_as_down(alpha):
    live(alpha.backup, status=catalog.BACKUP, journal_transfer="Active", agent_reachable=False)

    evaluate_alerts(now=seconds(1))

    [alert] = open_alerts()
    assert alert.key == "member_down:ALPHA:B" and "agent cannot be reached" in alert.text


def test_a_member_removed_from_the_monitor_resolves_its_alert(alpha):
    live(alpha.dr, status=catalog.DOWN)
    evaluate_alerts(now=seconds(1))

    MemberState.objects.filter(member=alpha.dr).delete()
    evaluate_alerts(now=seconds(2))

    assert open_alerts() == []


# --- Backup not Active ------------------------------------------------------------------------
@pytest.fixture
def threshold_30s(settings):
    settings.MONITOR_BACKUP_NOT_ACTIVE_S = 30


def test_a_backup_not_active_alerts_only_after_the_threshold(alpha, threshold_30s):
    live(alpha.backup, status=catalog.BACKUP, journal_transfer="Catchup", at=seconds(0))

    evaluate_alerts(now=seconds(29))
    assert open_alerts() == []
    evaluate_alerts(now=seconds(30))
    assert open_alerts() == []  # not *more* than 30 s yet
    evaluate_alerts(now=seconds(31))

    [alert] = open_alerts()
    assert alert.key == "backup_not_active:ALPHA:B"
    assert alert.text == "Backup B has not been Active for 31 s (Catchup)"


def test_a_backup_moving_between_states_that_are_not_active_keeps_its_clock(alpha, settings):
    """changed_at moves with each of these changes; the trouble started at the first one."""
    settings.MONITOR_BACKUP_NOT_ACTIVE_S = 5
    transfers = ["Catchup", "Disconnected on 12:00:02", "Catchup", "Disconnected on 12:00:04"]
    for n, transfer in enumerate(transfers):
        live(alpha.backup, status=catalog.BACKUP, journal_transfer=transfer, at=seconds(n))
        evaluate_alerts(now=seconds(n))
    for n in (4, 5):
        evaluate_alerts(now=seconds(n))
        assert open_alerts() == []

    evaluate_alerts(now=seconds(6))

    assert [a.rule for a in open_alerts()] == ["backup_not_active"]


def test_a_backup_that_was_active_in_between_starts_counting_again(alpha, settings):
    settings.MONITOR_BACKUP_NOT_ACTIVE_S = 5
    live(alpha.backup, status=catalog.BACKUP, journal_transfer="Catchup", at=seconds(0))
    evaluate_alerts(now=seconds(1))
    live(alpha.backup, status=catalog.BACKUP, journal_transfer=catalog.ACTIVE, at=seconds(2))
    evaluate_alerts(now=seconds(2))
    live(alpha.backup, status=catalog.BACKUP, journal_transfer="Catchup", at=seconds(3))

    for n in range(3, 9):
        evaluate_alerts(now=seconds(n))
        assert open_alerts() == [], n  # 5 s from 3 s, not from 0 s

    evaluate_alerts(now=seconds(9))
    assert [a.rule for a in open_alerts()] == ["backup_not_active"]


def test_after_a_gap_in_the_evaluations_the_clock_trusts_only_changed_at(alpha, settings):
    """Nobody watched during the gap: the backup may have been Active meanwhile."""
    settings.MONITOR_BACKUP_NOT_ACTIVE_S = 5
    live(alpha.backup, status=catalog.BACKUP, journal_transfer="Catchup", at=seconds(0))
    evaluate_alerts(now=seconds(1))
    live(alpha.backup, status=catalog.BACKUP, journal_transfer="Catchup", at=seconds(58))

    evaluate_alerts(now=seconds(60))

    assert open_alerts() == []


def test_only_a_failover_backup_is_held_to_being_active(alpha, threshold_30s):
    live(alpha.dr, status=catalog.CONNECTED, journal_transfer="Catchup", at=seconds(0))

    evaluate_alerts(now=seconds(100))

    assert open_alerts() == []


# --- The other rules --------------------------------------------------------------------------
def test_an_async_lagging_more_than_the_threshold_alerts(alpha, settings):
    settings.MONITOR_ASYNC_LAG_S = 60
    live(alpha.dr, status=catalog.CONNECTED, transfer_lag_s=60.0)
    evaluate_alerts(now=seconds(1))
    assert open_alerts() == []

    live(alpha.dr, status=catalog.CONNECTED, transfer_lag_s=75.0)
    evaluate_alerts(now=seconds(2))

    [alert] = open_alerts()
    assert alert.key == "async_lag:ALPHA:D" and "75 s behind" in alert.text


def test_a_lagging_failover_member_is_no_async_lag(alpha, settings):
    settings.MONITOR_ASYNC_LAG_S = 60
    live(alpha.backup, status=catalog.BACKUP, journal_transfer="Active", transfer_lag_s=500.0)

    evaluate_alerts(now=seconds(1))

    assert open_alerts() == []


def test_a_primary_in_trouble_alerts(alpha):
    live(alpha.primary, status=catalog.IN_TROUBLE)

    evaluate_alerts(now=seconds(1))

    assert [a.key for a in open_alerts()] == ["trouble:ALPHA:A"]


@pytest.mark.parametrize(
    "connection,alerts",
    [
        (catalog.ARBITER_BOTH, []),
        (catalog.ARBITER_ONLY_THIS, ["arbiter_lost:ALPHA"]),
        (catalog.ARBITER_NOT_CONNECTED, ["arbiter_lost:ALPHA"]),
    ],
)
def test_a_mirror_with_an_arbiter_alerts_unless_both_failover_members_reach_it(
    db, connection, alerts
):
    alpha = Mirror(arbiter_host="10.99.0.1")
    live(alpha.primary, status=catalog.PRIMARY, record={"arbiter_connection": connection})

    evaluate_alerts(now=seconds(1))

    assert [a.key for a in open_alerts()] == alerts


def test_a_mirror_without_an_arbiter_never_alerts_about_it(alpha):
    live(
        alpha.primary,
        status=catalog.PRIMARY,
        record={"arbiter_connection": catalog.ARBITER_NOT_CONNECTED},
    )

    evaluate_alerts(now=seconds(1))

    assert open_alerts() == []


@pytest.mark.parametrize("days_left,alerts", [(30, 0), (14.5, 0), (13, 1), (-1, 1)])
def test_a_certificate_expiring_within_the_days_set_alerts(alpha, settings, days_left, alerts):
    settings.MONITOR_CERT_EXPIRY_DAYS = 14
    not_after = seconds(1) + dt.timedelta(days=days_left)
    certificate = {"not_after": not_after.isoformat(), "subject_dn": "CN=D"}
    live(alpha.dr, status=catalog.CONNECTED, record={"certificate": certificate})

    evaluate_alerts(now=seconds(1))

    assert [a.key for a in open_alerts()] == ["certificate_expiring:ALPHA:D"] * alerts


def test_a_certificate_the_agent_could_not_read_is_no_expiry_alert(alpha):
    live(alpha.dr, status=catalog.CONNECTED, record={"certificate": {"error": "no such file"}})

    evaluate_alerts(now=seconds(1))

    assert open_alerts() == []


def test_each_drifted_setting_is_an_alert_until_the_drift_is_gone(alpha):
    drift = factories.drift(alpha.mirror, "qos_timeout_ms", observed="9000")

    evaluate_alerts(now=seconds(1))
    [alert] = open_alerts()
    assert alert.key == "drift:ALPHA:qos_timeout_ms" and "9000" in alert.text

    drift.delete()
    evaluate_alerts(now=seconds(2))
    assert open_alerts() == []


def test_a_quiet_evaluation_costs_three_queries_however_many_members(
    alpha, django_assert_num_queries
):
    for _ in range(10):
        live(factories.member(alpha.mirror, member_type=catalog.RO_REPORTING))
    live(alpha.dr, status=catalog.DOWN)
    evaluate_alerts(now=seconds(1))

    with django_assert_num_queries(3):
        assert evaluate_alerts(now=seconds(2)) == set()


# --- Acknowledging ----------------------------------------------------------------------------
@pytest.fixture
def down_alert(alpha):
    live(alpha.dr, status=catalog.DOWN)
    evaluate_alerts(now=seconds(1))
    return Alert.objects.get()


def test_acknowledging_records_who_and_when_in_the_audit_trail(down_alert, operator):
    alert = acknowledge_alert(operator, down_alert)

    assert alert.acknowledged_by == operator and alert.acknowledged_at is not None
    event = AuditEvent.objects.get(action="alert.acknowledge")
    assert event.actor == operator and event.object_id == str(alert.pk)
    assert event.after["key"] == "member_down:ALPHA:D"


def test_an_alert_is_acknowledged_only_once(down_alert, operator, admin_user):
    acknowledge_alert(operator, down_alert)

    with pytest.raises(StateConflict, match="already acknowledged by otto-operator"):
        acknowledge_alert(admin_user, Alert.objects.get())

    assert Alert.objects.get().acknowledged_by == operator
    assert AuditEvent.objects.filter(action="alert.acknowledge").count() == 1


# --- The page ---------------------------------------------------------------------------------
def test_the_alerts_page_shows_open_alerts_to_a_viewer(client, down_alert, viewer):
    client.force_login(viewer)

    page = client.get(reverse("alert-list")).content.decode()

    assert "D is Down" in page and "Open (1)" in page
    assert reverse("alert-acknowledge", args=[down_alert.pk]) not in page  # no button for a viewer


def test_resolved_alerts_are_listed_after_the_open_ones_only_with_all(client, alpha, viewer):
    live(alpha.dr, status=catalog.DOWN)
    evaluate_alerts(now=seconds(1))
    live(alpha.dr, status=catalog.CONNECTED)
    live(alpha.primary, status=catalog.IN_TROUBLE)
    evaluate_alerts(now=seconds(2))
    client.force_login(viewer)

    only_open = client.get(reverse("alert-list")).content.decode()
    everything = client.get(reverse("alert-list") + "?show=all").content.decode()

    assert "Primary A is In Trouble" in only_open and "D is Down" not in only_open
    assert everything.index("Primary A is In Trouble") < everything.index("D is Down")


def test_an_operator_acknowledges_from_the_page_and_is_sent_back(client, down_alert, operator):
    client.force_login(operator)
    url = reverse("alert-acknowledge", args=[down_alert.pk])
    assert url in client.get(reverse("alert-list")).content.decode()  # the button is there

    response = client.post(url, {"next": "/alerts/?show=all"}, follow=True)

    assert response.redirect_chain == [("/alerts/?show=all", 302)]
    assert "Acknowledged: D is Down" in response.content.decode()
    assert Alert.objects.get().acknowledged_by == operator


def test_acknowledging_twice_from_the_page_says_who_did_it_first(client, down_alert, operator):
    acknowledge_alert(operator, down_alert)
    client.force_login(operator)

    response = client.post(reverse("alert-acknowledge", args=[down_alert.pk]), follow=True)

    assert "already acknowledged by otto-operator" in response.content.decode()


def test_a_viewer_cannot_acknowledge_from_the_page(client, down_alert, viewer):
    client.force_login(viewer)

    response = client.post(reverse("alert-acknowledge", args=[down_alert.pk]))

    assert response.status_code == 403
    assert Alert.objects.get().acknowledged_at is None


def test_the_page_never_redirects_elsewhere(client, down_alert, operator):
    client.force_login(operator)

    response = client.post(
        reverse("alert-acknowledge", args=[down_alert.pk]), {"next": "https://evil.example/"}
    )

    assert response["Location"] == reverse("alert-list")


def test_signed_out_visitors_are_sent_to_log_in(client, db):
    response = client.get(reverse("alert-list"))

    assert response.status_code == 302 and response["Location"].startswith("/login/")


# --- REST -------------------------------------------------------------------------------------
V1 = "/api/v1"


@pytest.mark.api
def test_the_api_lists_alerts_filtered_by_mirror_rule_and_state(down_alert, alpha, viewer):
    live(alpha.primary, status=catalog.IN_TROUBLE)
    evaluate_alerts(now=seconds(2))
    api = api_client_for(viewer)

    def keys(**query):
        return [a["key"] for a in api.get(V1 + "/alerts/", query).json()["results"]]

    assert keys() == ["trouble:ALPHA:A", "member_down:ALPHA:D"]
    assert keys(mirror="alpha", rule="trouble") == ["trouble:ALPHA:A"]
    assert keys(mirror="beta") == []
    assert keys(open="false") == []
    assert api.get(V1 + f"/alerts/{down_alert.pk}/").json()["text"] == "D is Down"


@pytest.mark.api
def test_an_operator_acknowledges_through_the_api_and_a_second_time_is_a_409(down_alert, operator):
    url = V1 + f"/alerts/{down_alert.pk}/acknowledge/"
    api = api_client_for(operator)

    first = api.post(url)
    second = api.post(url)

    assert first.status_code == 200 and first.json()["acknowledged_by"] == "otto-operator"
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "already_acknowledged"


@pytest.mark.api
def test_a_viewer_cannot_acknowledge_through_the_api(down_alert, viewer):
    response = api_client_for(viewer).post(V1 + f"/alerts/{down_alert.pk}/acknowledge/")

    assert response.status_code == 403
    assert Alert.objects.get().acknowledged_at is None


# --- Takeovers --------------------------------------------------------------------------------
def test_a_takeover_opens_an_alert_that_resolves_after_its_time(alpha, settings):
    settings.MONITOR_TAKEOVER_ALERT_S = 600
    live(alpha.primary, status=catalog.DOWN, record={"role": "primary"})
    live(
        alpha.backup,
        status=catalog.PRIMARY,
        record={"role": "primary", "took_over_at": T0.isoformat(), "took_over_from": "A"},
    )

    evaluate_alerts(now=seconds(1))

    (alert,) = open_alerts(Alert.TAKEOVER)
    assert alert.key == "takeover:ALPHA:B" and alert.member_name == "B"
    assert alert.text.startswith("B took over as primary from A at ")
    assert Event.objects.filter(kind=Event.ALERT, text__startswith="Alert: B took over").exists()
    evaluate_alerts(now=seconds(601))
    assert open_alerts(Alert.TAKEOVER) == []

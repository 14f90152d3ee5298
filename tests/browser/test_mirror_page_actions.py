"""The mirror page's operations in real Chromium, against real agents and instances: a small TLS
mirror (two failover members and a DR async, two databases) is built through the REST API, then
in the browser an admin catches up two of the DR member's databases with one job, and removes
the DR member only once the mirror's name is typed; a viewer gets no action button, and a POST
forged with the viewer's session is refused. Outcomes are asked of the members through their
agents, not read from the portal's tables.

The mirror page and each confirmation page are saved at 1280 and 390 px under
var/screens/mirror-actions/ (not committed) to be looked at."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from engine.cluster.hosts import member_tls
from members.models import DatabaseCopy, Member
from tasks.models import Job
from tests.browser.conftest import log_in
from tests.conftest import make_user
from tests.e2e import conftest as e2e

# Real hosts, the REST helper and the Celery worker, as the end-to-end tests use them.
fresh_hosts, portal, worker = e2e.fresh_hosts, e2e.portal, e2e.worker

pytestmark = [pytest.mark.browser, pytest.mark.jobs, pytest.mark.timeout(240)]

HOSTS = {"hosta": ["A"], "hostb": ["B"], "hostc": ["DR"]}
MEMBERS = {"A": "failover", "B": "failover", "DR": "dr"}
DATABASES = ("USER", "APP")
SCREENS = Path(__file__).resolve().parents[2] / "var" / "screens" / "mirror-actions"
JOB_WAIT_MS = 60_000


def snap(page, name: str) -> None:
    """The page at 1280 px and at 390 px (a phone), full length."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SCREENS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def build(site, api) -> dict:
    """Hosts registered and checked, certificates given, SHOP created on A, B and DR joined;
    B authorized, DR left waiting (its rejection page is looked at first)."""
    plan, hosts = site.plan, {}
    for host in plan.hosts:
        row = api.post(
            "/hosts/",
            {"name": host.name, "address": "127.0.0.1", "agent_port": host.agent_port},
            expect=201,
        )
        api.run(f"/hosts/{row['id']}/check/")
        hosts[host.name] = row["id"]
    for member in plan.members:
        instance = api.one("/instances/", name=member.name)
        cert, key, ca = member_tls(plan, member)
        files = {"cert": str(cert), "key": str(key), "ca": str(ca)}
        api.run(f"/instances/{instance['id']}/tls/", files)
    body = {"host": hosts["hosta"], "instance": "A", "name": "shop"}
    api.run("/mirrors/", body | {"private": plan.member("A").private, "requires_tls": True})
    mirror = api.one("/mirrors/", name="SHOP")
    for name in ("B", "DR"):
        member = plan.member(name)
        body = {"host": hosts[member.host], "instance": name, "member_type": member.type}
        if member.private:
            body["private"] = member.private
        api.run(f"/mirrors/{mirror['id']}/join/", body)
    backup = Member.objects.get(mirror__name="SHOP", name="B")
    api.run(f"/pending-members/{backup.pk}/authorize/")
    return mirror


def copies_on_dr(site) -> dict[str, str]:
    answer = site.agents["hostc"].databases("DR", mirror="SHOP")
    return {db["name"]: db["status"] for db in answer["databases"]}


def members_on_the_primary(site) -> set[str]:
    return {m["name"] for m in site.agents["hosta"].mirror_info("A")["members"]}


def wait_for_job(page, kind: str) -> None:
    expect(page.get_by_role("heading", name=kind)).to_be_visible()
    expect(page.locator(".badge")).to_have_text("Succeeded", timeout=JOB_WAIT_MS)


def test_an_admin_catches_up_two_databases_in_one_job_and_removes_a_member_once_confirmed(
    live_server, browser_page, fresh_hosts, portal, worker
):
    site = fresh_hosts(HOSTS, MEMBERS)
    worker()
    mirror = build(site, portal)
    page, base = browser_page, live_server.url
    mirror_page = f"{base}/mirrors/SHOP/"
    log_in(page, base, "ada-admin")  # the portal fixture's admin

    # DR waits for authorization: its rejection page says what is at risk
    page.goto(mirror_page)
    snap(page, "mirror-page-pending")
    dr = Member.objects.get(mirror__name="SHOP", name="DR")
    page.goto(f"{mirror_page}members/{dr.pk}/reject/")
    expect(page.get_by_role("heading", name="Reject DR")).to_be_visible()
    snap(page, "confirm-reject-member")

    # DR authorized; two databases with a copy on B and DR; DR's copies dismounted and mounted
    # again, so each needs a catch-up (guide §5.11.5)
    portal.run(f"/pending-members/{dr.pk}/authorize/")
    for name in DATABASES:
        portal.run("/databases/", {"mirror": mirror["id"], "name": name})
    for copy in DatabaseCopy.objects.filter(member=dr):
        portal.run(f"/database-copies/{copy.pk}/dismount/")
        portal.run(f"/database-copies/{copy.pk}/mount/")
    assert copies_on_dr(site) == {"USER": "Needs Catchup", "APP": "Needs Catchup"}

    # (b) select both databases on DR, choose "Catch up": one job catches both up
    page.goto(mirror_page)
    page.get_by_role("navigation", name="Choose a member").get_by_role(
        "link", name="DR", exact=True
    ).click()
    apply = page.get_by_role("button", name="Apply to selected")
    expect(apply).to_be_disabled()  # nothing selected yet
    for name in DATABASES:
        page.get_by_label(name, exact=True).check()
    page.get_by_label("Action for the selected databases").select_option("catchup")
    snap(page, "mirror-page-two-selected")
    apply.click()

    wait_for_job(page, "catchup_databases")
    catchups = Job.objects.filter(kind="catchup_databases")
    assert [(j.member_id, j.params) for j in catchups] == [(dr.pk, {"databases": ["APP", "USER"]})]
    assert copies_on_dr(site) == {"USER": "Dejournaling", "APP": "Dejournaling"}

    # every other confirmation page, as an admin sees it before typing anything
    page.goto(mirror_page)
    snap(page, "mirror-page")
    on_dr = list(DatabaseCopy.objects.filter(member=dr))
    copies = "&".join(f"copies={c.pk}" for c in on_dr)
    for name, path in (
        ("confirm-remove-databases", f"members/{dr.pk}/databases/remove/?{copies}"),
        ("confirm-tls-off", "tls-off/"),
        ("confirm-remove-mirror", "remove/"),
        ("confirm-forget-mirror", "forget/"),
    ):
        page.goto(mirror_page + path)
        expect(page.get_by_role("heading", name="What is at risk")).to_be_visible()
        snap(page, name)

    # a viewer sees no action button, and a POST forged with the viewer's session is refused
    viewer = make_user("vera-viewer", "viewer")
    context = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        seen = context.new_page()
        log_in(seen, base, viewer.username)
        seen.goto(mirror_page)
        expect(seen.get_by_role("heading", name="Mirror SHOP")).to_be_visible()
        expect(seen.get_by_role("button")).to_have_count(1)  # "Log out" only
        expect(seen.get_by_role("button", name="Log out")).to_be_visible()
        expect(seen.get_by_text("Actions")).to_have_count(0)
        token = next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
        for path, form in (
            (f"members/{dr.pk}/remove/", {"confirm": "SHOP"}),
            (f"members/{dr.pk}/databases/", {"copies": str(on_dr[0].pk), "action": "catchup"}),
        ):
            forged = seen.request.post(
                mirror_page + path,
                form={**form, "csrfmiddlewaretoken": token},
                headers={"X-CSRFToken": token},
            )
            assert forged.status == 403, path
    finally:
        context.close()
    assert not Job.objects.filter(kind="remove_member").exists()
    assert Job.objects.filter(kind="catchup_databases").count() == 1

    # (a) removing DR is refused until the mirror's name is typed
    page.goto(mirror_page)
    page.get_by_text("Actions for DR").click()
    page.get_by_role("link", name="Remove DR").click()
    expect(page.get_by_role("heading", name="Remove DR from SHOP")).to_be_visible()
    expect(page.get_by_text("Disaster Recovery (DR)")).to_be_visible()
    snap(page, "confirm-remove-member")
    remove = page.get_by_role("button", name="Remove DR")
    confirm = page.get_by_label("Type the mirror's name to confirm")
    remove.click()  # nothing typed: the browser does not even send it
    expect(page).to_have_url(f"{mirror_page}members/{dr.pk}/remove/")
    confirm.fill("SHO")
    remove.click()
    expect(page.get_by_text("Type the mirror's name, SHOP, to confirm.").first).to_be_visible()
    snap(page, "confirm-remove-member-refused")
    assert not Job.objects.filter(kind="remove_member").exists()
    assert "DR" in members_on_the_primary(site)

    page.get_by_label("Type the mirror's name to confirm").fill("shop")
    page.get_by_role("button", name="Remove DR").click()

    wait_for_job(page, "remove_member")
    assert members_on_the_primary(site) == {"A", "B"}
    assert not Member.objects.filter(mirror__name="SHOP", name="DR").exists()

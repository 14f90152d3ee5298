"""The new-mirror wizard in real Chromium, against real agents and instances: from an empty
portal to a healthy TLS mirror of two failover members, a DR async and a reporting async with
two databases — then what the mirror is, is asked of the members through their agents.

Each step's page is saved under var/screens/wizard/ (not committed) to be looked at."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from engine.cluster.hosts import member_tls
from engine.storage.store import Store
from members.models import Draft, Instance, Member
from tests.browser.conftest import log_in
from tests.conftest import make_user
from tests.e2e.conftest import celery_worker, fresh_hosts, worker  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.jobs, pytest.mark.timeout(400)]

HOSTS = {"hosta": ["A"], "hostb": ["B"], "hostc": ["DR", "REP"]}
MEMBERS = {"A": "failover", "B": "failover", "DR": "dr", "REP": "ro_reporting"}
SCREENS = Path(__file__).resolve().parents[2] / "var" / "screens" / "wizard"
JOB_WAIT_MS = 120_000


def snap(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True)


def go_on(page, button: str) -> None:
    """Press the step's button once the jobs of the steps before have succeeded."""
    next_button = page.get_by_role("button", name=button, exact=True)
    expect(next_button).to_be_enabled(timeout=JOB_WAIT_MS)
    next_button.click()


def wait_jobs_succeeded(page, where: str) -> None:
    jobs = page.locator(f"{where} [data-job]")
    for i in range(jobs.count()):
        expect(jobs.nth(i)).to_have_attribute("data-state", "succeeded", timeout=JOB_WAIT_MS)


def local_database_with_data(site, db: str, rows: int = 300) -> None:
    """A database of the primary's own, with data, as a member holds one before it is mirrored
    (written in its files: the superserver serves mirrored databases only)."""
    site.agent_of("A").create_database("A", db, mirrored=False)
    store = Store.open(str(site.plan.data_dir(site.plan.member("A")) / "db" / db))
    try:
        for i in range(rows):
            store.set("W", ("existing", i), f"existing {i}")
    finally:
        store.close()


def test_the_wizard_builds_a_healthy_tls_mirror_from_nothing(
    live_server,
    browser_page,
    fresh_hosts,  # noqa: F811 - the fixture imported above
    worker,  # noqa: F811
):
    site = fresh_hosts(HOSTS, MEMBERS)
    worker()
    make_user("ada-admin", "admin")
    page, plan = browser_page, site.plan
    log_in(page, live_server.url, "ada-admin")

    page.get_by_role("link", name="New mirror").click()
    page.get_by_role("button", name="Start a new mirror").click()
    expect(page.get_by_text("No host is registered yet")).to_be_visible()
    snap(page, "1-instances-empty")

    # 1. hosts registered from the wizard; their agents report the instances
    for host in plan.hosts:
        page.get_by_label("Name", exact=True).fill(host.name)
        page.get_by_label("Address").fill("127.0.0.1")
        page.get_by_label("Agent port").fill(str(host.agent_port))
        page.get_by_role("button", name="Add and check").click()
        expect(page.get_by_text(f"Host {host.name} registered")).to_be_visible()
        if not page.locator("details:has(#host-name)").get_attribute("open"):
            page.get_by_text("Add a host").click()
    wait_jobs_succeeded(page, "[data-hosts]")
    pk = {i.name: str(i.pk) for i in Instance.objects.all()}
    assert set(pk) == {"A", "B", "DR", "REP"}
    expect(page.locator("select[name='instances-primary'] option")).to_have_count(5)
    page.get_by_label("First failover member").select_option(pk["A"])
    page.get_by_label("Second failover member").select_option(pk["B"])
    page.locator(f"input[name='instances-asyncs'][value='{pk['DR']}']").check()
    page.locator(f"input[name='instances-asyncs'][value='{pk['REP']}']").check()
    expect(page.get_by_label("Secure the mirror with TLS")).to_be_checked()
    snap(page, "1-instances")
    go_on(page, "Next")

    # 2. the instances have no certificate yet: the wizard gives them their files
    expect(page.get_by_role("heading", name="Certificates", level=2)).to_be_visible()
    for member in plan.members:
        cert, key, ca = member_tls(plan, member)
        page.get_by_label(f"{member.name}'s certificate").fill(str(cert))
        page.get_by_label(f"{member.name}'s private key").fill(str(key))
    page.get_by_label("CA certificate").fill(str(ca))
    snap(page, "2-certificates")
    go_on(page, "Give the certificates")

    # 3. the mirror, created on the first failover member once the certificates are set
    expect(page.get_by_role("heading", name="Create the mirror", level=2)).to_be_visible()
    page.get_by_label("Mirror name").fill("shop")
    page.get_by_label("Mirror private address of the first failover member").fill(
        plan.member("A").private
    )
    qos = page.get_by_label("Quality of service timeout (milliseconds)")
    expect(qos).to_be_hidden()  # folded away
    wait_jobs_succeeded(page, "[data-waiting]")
    snap(page, "3-mirror")
    go_on(page, "Create the mirror")

    # 4. the backup joins
    expect(page.get_by_role("heading", name="Join the backup", level=2)).to_be_visible()
    page.get_by_label("Mirror private address of the second failover member").fill(
        plan.member("B").private
    )
    snap(page, "4-backup")
    go_on(page, "Join the backup")

    # 5. both asyncs join at once
    expect(page.get_by_role("heading", name="Join asyncs", level=2)).to_be_visible()
    page.get_by_label("DR on hostc").select_option("dr")
    page.get_by_label("REP on hostc").select_option("ro_reporting")
    snap(page, "5-asyncs")
    go_on(page, "Join them")

    # 6. the joined members wait for authorization; each DN is shown as presented
    expect(page.get_by_role("heading", name="Authorize", level=2)).to_be_visible()
    wait_jobs_succeeded(page, "[data-waiting]")
    for name in ("B", "DR", "REP"):
        choice = page.get_by_label(f"{name} (", exact=False)
        expect(choice).to_be_checked()
        expect(page.get_by_text(f"DN CN={name},")).to_be_visible()
    snap(page, "6-authorize")
    go_on(page, "Authorize")

    # 7. one new database, one the primary already holds (downloaded by the others)
    local_database_with_data(site, "LEGACY")
    expect(page.get_by_role("heading", name="Databases", level=2)).to_be_visible()
    page.get_by_label("New databases").fill("orders")
    page.get_by_label("Existing databases of the primary").fill("LEGACY")
    snap(page, "7-databases")
    go_on(page, "Add the databases")

    # 8. nothing left to catch up once the downloads are in
    expect(page.get_by_role("heading", name="Activate and catch up", level=2)).to_be_visible()
    wait_jobs_succeeded(page, "[data-waiting]")
    snap(page, "8-catchup")
    go_on(page, "Catch up")

    # 9. the review, read from the members
    checklist = page.locator("#checklist .checklist")
    expect(checklist).to_be_visible(timeout=JOB_WAIT_MS)
    snap(page, "9-review")
    bad = [t for t in checklist.locator("li.bad").all_inner_texts() if "arbiter" not in t]
    assert bad == [], bad
    expect(checklist.locator("li.ok")).to_have_count(13)  # 1 + 3 x 3 members, TLS, 2 databases
    page.get_by_role("button", name="Finish").click()
    expect(page).to_have_url(f"{live_server.url}/mirrors/SHOP/")
    snap(page, "10-mirror-page")

    # what the members themselves say
    statuses = {}
    for member in plan.members:
        answer = site.agent_of(member.name).databases(member.name, mirror="SHOP")
        statuses[member.name] = (
            answer["status"],
            {d["name"]: d["status"] for d in answer["databases"]},
        )
    assert statuses["A"][0] == "Primary"
    assert statuses["B"][0] == "Backup"
    assert statuses["DR"][0] == statuses["REP"][0] == "Connected"
    for name in ("B", "DR", "REP"):
        assert set(statuses[name][1]) == {"ORDERS", "LEGACY"}
        assert set(statuses[name][1].values()) == {"Dejournaling"}, statuses[name]
    assert not Draft.objects.filter(finished_at=None).exists()
    assert Member.objects.filter(mirror__name="SHOP", authorization="authorized").count() == 4


def test_a_draft_left_at_step_three_is_resumed_in_a_new_browser_session(
    live_server, browser_page, transactional_db
):
    from tests import factories

    hosta, hostb = factories.host(name="hosta"), factories.host(name="hostb")
    a = factories.instance(hosta, name="A", superserver="10.0.0.1:1972")
    b = factories.instance(hostb, name="B", superserver="10.0.0.2:1972")
    make_user("ada-admin", "admin")
    page = browser_page
    log_in(page, live_server.url, "ada-admin")
    page.get_by_role("link", name="New mirror").click()
    page.get_by_role("button", name="Start a new mirror").click()
    page.get_by_label("First failover member").select_option(str(a.pk))
    page.get_by_label("Second failover member").select_option(str(b.pk))
    go_on(page, "Next")
    go_on(page, "Give the certificates")  # theirs are in place: nothing to give
    expect(page.get_by_role("heading", name="Create the mirror", level=2)).to_be_visible()
    page.context.clear_cookies()  # the browser session ends here

    fresh = page.context.browser.new_context().new_page()
    log_in(fresh, live_server.url, "ada-admin")
    fresh.get_by_role("link", name="Drafts (1)").click()
    fresh.get_by_role("link", name="Carry on").click()
    expect(fresh.get_by_role("heading", name="Create the mirror", level=2)).to_be_visible()
    rail = fresh.get_by_role("navigation", name="Wizard steps")
    expect(rail.locator("li.done")).to_have_text(["Instances (done)", "Certificates (done)"])
    expect(rail.locator("[aria-current=step]")).to_contain_text("Create the mirror")
    expect(fresh.get_by_label("Mirror private address of the first failover member")).to_have_value(
        "10.0.0.1:1973"
    )
    fresh.get_by_role("button", name="Back").click()
    fresh.get_by_role("button", name="Back").click()
    expect(fresh.get_by_label("Second failover member")).to_have_value(str(b.pk))
    snap(fresh, "resumed-draft")

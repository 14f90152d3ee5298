"""Verify SSL before TLS is turned on for a running mirror (guide §4.10.4 step b, §4.5): the
primary asks every member for its certificate, names those without a valid one, and will
not turn TLS on while a reachable member fails.  Real instance processes."""

import datetime as dt

import pytest

from engine.client.app import Refused
from engine.wire import tls
from tests.engine.cluster_fixtures import wait_for
from tests.engine.member_fixtures import hosts  # noqa: F401
from tests.engine.test_membership_changes import plain_mirror

pytestmark = pytest.mark.timeout(150)


def rows(report) -> dict:
    return {r["member"]: r for r in report["members"]}


def test_verify_ssl_names_the_unfit_members_and_tls_waits_until_they_are_fixed(hosts, tmp_path):  # noqa: F811
    hosts.make_ca()
    a, b, c, d, e = plain_mirror(hosts, *"ABCDE", mirror="LATER")
    hosts.cert("A")
    a.set_tls(hosts.certs)
    # B has no TLS configuration; C's certificate file is replaced in place by one that has
    # expired; E's comes from another CA; D has a good one but is down when the primary asks
    for host in (c, d):
        hosts.cert(host.name)
        host.set_tls(hosts.certs)
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    hosts.cert("C", not_before=expired - dt.timedelta(days=30), not_after=expired)
    rogue_ca = tls.make_ca(tmp_path / "rogue", name="Rogue CA")
    rogue = tls.make_cert(rogue_ca, tmp_path / "rogue", "E")
    e.admin(
        "set_tls", {"cert": str(rogue.cert), "key": str(rogue.key), "ca": str(rogue_ca.cert_path)}
    )
    d.stop()

    with pytest.raises(Refused, match="set up TLS on member B first"):
        b.admin("verify_tls")
    # C re-reads its files every few seconds
    report = wait_for(
        lambda: (r := a.admin("verify_tls")) and "expired" in (rows(r)["C"]["problem"] or "") and r,
        15,
        "the primary sees C's expired certificate",
    )
    found = rows(report)
    assert found["A"]["ok"] is True and found["A"]["dn"] == "CN=A,O=Mirror Portal"
    assert found["B"]["ok"] is False and "no TLS configuration" in found["B"]["problem"]
    assert found["C"]["ok"] is False and "expired on" in found["C"]["problem"]
    assert found["E"]["ok"] is False and "not by the mirror's CA" in found["E"]["problem"]
    assert found["D"]["reachable"] is False and found["D"]["ok"] is None
    assert "not reachable" in found["D"]["problem"]
    assert report["failing"] == ["B", "C", "E"] and report["unreachable"] == ["D"]
    assert report["ok"] is False and report["ca"] == "CN=Mirror Portal throwaway CA,O=Mirror Portal"

    with pytest.raises(Refused, match=r"member\(s\) B, C, E have no valid TLS configuration"):
        a.admin("edit_mirror", {"tls": True})
    assert a.admin("mirror_info")["tls"] is False
    assert b.status()["status"] == "Backup"  # nothing was restarted

    for host in (b, c, e):  # fixed: a valid certificate from the mirror's CA on each
        hosts.cert(host.name)
        host.set_tls(hosts.certs)
    report = a.admin("verify_tls")
    assert report["ok"] is True and report["failing"] == []
    assert {r["member"] for r in report["members"] if r["ok"]} == {"A", "B", "C", "E"}

    result = a.admin("edit_mirror", {"tls": True})  # D, unreachable, does not hold it up
    assert result["changed"] == ["tls"]
    assert rows({"members": result["verified"]})["D"]["reachable"] is False
    # every other member is pending again, to be authorized with the DN it connects with
    wait_for(
        lambda: {p["name"] for p in a.status()["pending_members"] if p["dn"]} == set("BCE"), 20
    )
    for name in "BCE":
        a.admin("authorize_member", {"member": name})
    b.wait_state("Backup")
    c.wait_state("Connected")
    e.wait_state("Connected")
    assert e.admin("mirror_info")["tls"] is True

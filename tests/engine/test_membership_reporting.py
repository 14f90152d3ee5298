"""A reporting async in several mirrors (guide §3.1.2.2, §4.7.5, §4.10.3): one instance, one
superserver, a membership per mirror; requests go to the mirror holding the database."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.client.app import Refused
from tests.engine.cluster_fixtures import free_ports, wait_for
from tests.engine.member_fixtures import InstanceProcess, hosts  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def primary_of(hosts, name: str, mirror: str):  # noqa: F811
    host = hosts.add(name)
    host.admin("mirror_create", {"mirror": mirror, "private": host.private})
    host.after_restart()
    return host


def test_a_reporting_async_joins_two_mirrors_and_serves_both(hosts):  # noqa: F811
    a = primary_of(hosts, "A", "SALES")
    b = primary_of(hosts, "B", "STOCK")
    r = hosts.add("R")
    r.admin("mirror_join", {"mirror": "SALES", "address": a.superserver, "type": "ro_reporting"})
    r.wait_state("Connected")
    # a second mirror: same kind, same member name
    with pytest.raises(Refused, match="joins further mirrors as the same kind"):
        r.admin("mirror_join", {"mirror": "STOCK", "address": b.superserver, "type": "dr"})
    with pytest.raises(Refused, match="already a member of mirror SALES"):
        r.admin(
            "mirror_join", {"mirror": "SALES", "address": a.superserver, "type": "ro_reporting"}
        )
    r.admin("mirror_join", {"mirror": "STOCK", "address": b.superserver, "type": "ro_reporting"})
    both = wait_for(lambda: (s := r.status()).get("status") == "2/2" and s, 20, "R in both")
    assert both["type"] == "Read-Only Reporting"
    assert {n: s["status"] for n, s in both["mirrors"].items()} == {
        "SALES": "Connected",
        "STOCK": "Connected",
    }
    assert r.status_of("STOCK")["mirror"] == "STOCK"

    a.admin("create_database", "ORDERS")
    b.admin("create_database", "ITEMS")
    with a.client() as c:
        c.set("ORDERS", "O", (1,), "first order")
    with b.client() as c:
        c.set("ITEMS", "I", (7,), "widget")
    # with two mirrors a database-less action must say which
    with pytest.raises(Refused, match="say which with 'mirror'"):
        r.admin("mirror_info")
    r.admin("create_database", {"name": "ORDERS", "mirror": "SALES"})
    r.admin("create_database", {"name": "ITEMS", "mirror": "STOCK"})
    wait_for(lambda: r.admin("digest", "ORDERS") == a.admin("digest", "ORDERS"), 15, "ORDERS")
    wait_for(lambda: r.admin("digest", "ITEMS") == b.admin("digest", "ITEMS"), 15, "ITEMS")
    with r.client() as c:
        assert c.get("ORDERS", "O", (1,)) == "first order"
        assert c.get("ITEMS", "I", (7,)) == "widget"
    assert r.admin("mirror_info", {"mirror": "STOCK"})["name"] == "STOCK"

    # leaving one mirror keeps the other
    r.admin("leave_mirror", {"mirror": "STOCK", "remove_db_attribute": True})
    wait_for(lambda: r.status().get("mirror") == "SALES", 20, "R only in SALES")
    r.wait_state("Connected")
    wait_for(
        lambda: "R" not in {m["name"] for m in b.admin("mirror_info")["members"]}, 15, "B drops R"
    )


def test_a_dr_async_belongs_to_one_mirror_only(hosts):  # noqa: F811
    a = primary_of(hosts, "A", "ONE")
    b = primary_of(hosts, "B", "TWO")
    d = hosts.add("D")
    d.admin("mirror_join", {"mirror": "ONE", "address": a.superserver, "type": "dr"})
    d.wait_state("Connected")
    with pytest.raises(Refused, match="a DR async belongs to one mirror only"):
        d.admin("mirror_join", {"mirror": "TWO", "address": b.superserver, "type": "dr"})
    with pytest.raises(Refused, match="already a member of mirror ONE"):
        d.admin("mirror_create", {"mirror": "THREE", "private": d.private})


def primaries(hosts, mirrors: list[str]) -> list[InstanceProcess]:  # noqa: F811
    """A primary per mirror (PM1 creates M1, ...), started side by side."""
    ports = free_ports(2 * len(mirrors))
    made = []
    for i, mirror in enumerate(mirrors):
        host = InstanceProcess(hosts.root, f"P{mirror}", ports[2 * i], ports[2 * i + 1])
        made.append(hosts.hosts.setdefault(host.name, host))

    def create(pair):
        host, mirror = pair
        host.start()
        host.admin("mirror_create", {"mirror": mirror, "private": host.private})
        host.after_restart()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, zip(made, mirrors, strict=True)))
    return made


def mirrors_of(host: InstanceProcess) -> set[str] | None:
    """The mirrors the instance answers for, None while it restarts."""
    try:
        st = host.status()
    except Exception:
        return None
    return set(st.get("mirrors") or ()) or {st["mirror"]} - {None}


def test_a_reporting_async_belongs_to_ten_mirrors_and_the_eleventh_is_refused(hosts):  # noqa: F811
    # 8-15 s: eleven primaries (each started, then restarted as primary), ten restarts of R
    names = [f"M{i}" for i in range(1, 12)]
    *ten, eleventh = primaries(hosts, names)
    r = hosts.add("R")
    for k, (mirror, primary) in enumerate(zip(names[:10], ten, strict=True), start=1):
        r.admin(
            "mirror_join",
            {"mirror": mirror, "address": primary.superserver, "type": "ro_reporting"},
        )
        wait_for(lambda k=k: mirrors_of(r) == set(names[:k]), 30, f"R in {k} mirrors")
    r.wait_state("10/10", 30)
    with pytest.raises(Refused, match="a reporting async belongs to at most 10 mirrors"):
        r.admin(
            "mirror_join",
            {"mirror": "M11", "address": eleventh.superserver, "type": "ro_reporting"},
        )
    # nothing changed: R stays in its ten, and M11 never heard of it
    assert mirrors_of(r) == set(names[:10])
    assert [m["name"] for m in eleventh.admin("mirror_info")["members"]] == ["PM11"]

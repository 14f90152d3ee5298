"""The agent serves journal files to peers: byte-identical, in chunks, whole records on
request, each mirror's from its own membership, and never anything outside the instance's
journal."""

from __future__ import annotations

import pytest

from engine.client.agent import AgentError
from engine.storage.journal_codec import decode_records, file_content
from engine.storage.journal_files import list_files
from tests.engine.agent_fixtures import (  # noqa: F401
    instance_entries,
    pki_fixture,
    start_agent_fixture,
    started_agent,
)
from tests.engine.cluster_fixtures import started_cluster, wait_for
from tests.engine.member_fixtures import hosts  # noqa: F401

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from started_cluster(tmp_path_factory.mktemp("mirror"), types=("failover", "failover"))


@pytest.fixture(scope="module")
def written(cluster):
    with cluster.client() as c:
        c.pipeline([("set", "USER", "Patient", (i, "name"), f"name {i}" * 5) for i in range(300)])
    cluster.wait_backup_active("B")
    cluster.wait_converged("B")
    return cluster


@pytest.fixture(scope="module")
def agent(written, pki, tmp_path_factory):
    """One agent for the tests on `written`: they only read through it (an agent start is
    ~0.4 s of each test's setup otherwise)."""
    yield from started_agent(
        tmp_path_factory.mktemp("agent"), pki=pki, instances=instance_entries(written)
    )


def journal_on_disk(cluster, member: str) -> dict[str, bytes]:
    d = cluster.cfg.member(member).data_dir / "journal"
    return {name: (d / name).read_bytes() for _, name in list_files(d, cluster.cfg.name)}


def test_listing_names_every_journal_file_with_its_size(agent, written):
    on_disk = journal_on_disk(written, "A")
    assert on_disk
    with agent.client() as c:
        files = c.journal_files("TEST", instance="A")
    assert [f["name"] for f in files] == list(on_disk)
    assert [f["size"] for f in files] == [len(b) for b in on_disk.values()]
    assert [f["seq"] for f in files] == sorted(f["seq"] for f in files)


def test_journal_files_are_served_byte_identical_in_chunks(agent, written):
    on_disk = journal_on_disk(written, "A")
    assert sum(len(b) for b in on_disk.values()) > 10_000
    with agent.client() as c:
        for name, data in on_disk.items():
            got, offset = bytearray(), 0
            while True:
                chunk, headers = c.journal_chunk("TEST", name, offset, 4096, instance="A")
                if not chunk:
                    break
                assert int(headers["x-journal-offset"]) == offset
                got += chunk
                offset += len(chunk)
            assert bytes(got) == data
            assert c.fetch_journal_file("TEST", name, instance="A") == data


def test_the_backup_serves_the_same_bytes_as_the_primary(agent, written):
    with agent.client() as c:
        names = [f["name"] for f in c.journal_files("TEST", instance="A")]
        assert names == list(journal_on_disk(written, "A"))
        assert names

        def same():
            return all(
                file_content(c.fetch_journal_file("TEST", n, instance="A"))
                == file_content(c.fetch_journal_file("TEST", n, instance="B"))
                for n in names
            )

        wait_for(same, 15, "B's journal to equal A's")


def test_records_mode_returns_whole_checksummed_file_content(agent, written):
    name, data = next(iter(journal_on_disk(written, "A").items()))
    with agent.client() as c:
        first, headers = c.journal_chunk("TEST", name, 0, 1000, instance="A", records=1)
        nxt = int(headers["x-journal-next-offset"])
        assert first == data[:nxt]
        second, headers = c.journal_chunk("TEST", name, nxt, 1000, instance="A", records=1)
    assert second == data[nxt : int(headers["x-journal-next-offset"])]
    records = decode_records(second)  # raises on any cut or corrupt record
    assert records and records[0].position[1] == nxt


@pytest.mark.parametrize(
    "name",
    [
        "../mirror.toml",
        "..%2F..%2Fmirror.toml",
        "%2Fetc%2Fpasswd",
        "mirrorjrn-TEST.log",
        "MIRROR-TEST-20990101.999",
        "MIRROR-TEST-20260101.001%00",
    ],
)
def test_nothing_but_listed_journal_files_can_be_read(agent, name):
    with agent.client() as c:
        status, _, body = c.request("GET", f"/v1/journal/TEST/files/{name}", {"instance": "A"})
    assert status in (400, 404), body
    assert b'"error"' in body
    assert b"root:" not in body and b"[mirror]" not in body


def test_bad_offsets_and_lengths_get_400_or_416(agent, written):
    name, data = next(iter(journal_on_disk(written, "A").items()))
    path = f"/v1/journal/TEST/files/{name}"
    with agent.client() as c:
        for params, status in [
            ({"offset": "abc"}, 400),
            ({"offset": "-1"}, 400),
            ({"offset": "9" * 40}, 400),
            ({"length": str(1 << 30)}, 400),
            ({"records": "yes"}, 400),
            ({"offset": str(len(data) + 10**6)}, 416),
        ]:
            got, _, body = c.request("GET", path, {"instance": "A", **params})
            assert got == status, (params, body)
        at_end, headers = c.journal_chunk("TEST", name, len(data), instance="A")
    assert at_end == b""
    assert int(headers["x-journal-file-size"]) == len(data)


def test_mirror_and_instance_errors_are_clear(agent):
    with agent.client() as c:
        with pytest.raises(AgentError, match="several instances .* choose one"):
            c.journal_files("TEST")
        with pytest.raises(AgentError, match="holds no journal|no instance on this host holds"):
            c.journal_files("OTHER")
        with pytest.raises(AgentError) as err:
            c.journal_files("bad-name!")
        assert err.value.status == 400
        with pytest.raises(AgentError, match="no instance named"):
            c.journal_files("TEST", instance="Z")


def journal_in(directory, mirror: str) -> dict[str, bytes]:
    d = directory / "journal"
    return {name: file_content((d / name).read_bytes()) for _, name in list_files(d, mirror)}


def served(c, mirror: str) -> dict[str, bytes]:
    files = c.journal_files(mirror)
    return {f["name"]: file_content(c.fetch_journal_file(mirror, f["name"])) for f in files}


@pytest.fixture
def reporting_in_two(hosts, pki, start_agent):  # noqa: F811
    """R, a reporting async in SALES (primary A) and STOCK (primary B), each with written
    journal, and the agent on R's host: R alone, so the mirror in the path picks the
    journal."""
    a, b = hosts.add("A"), hosts.add("B")
    for host, mirror in ((a, "SALES"), (b, "STOCK")):
        host.admin("mirror_create", {"mirror": mirror, "private": host.private})
        host.after_restart()
    r = hosts.add("R")
    r.admin("mirror_join", {"mirror": "SALES", "address": a.superserver, "type": "ro_reporting"})
    r.wait_state("Connected")
    r.admin("mirror_join", {"mirror": "STOCK", "address": b.superserver, "type": "ro_reporting"})
    r.wait_state("2/2")
    for host, db in ((a, "ORDERS"), (b, "ITEMS")):
        host.admin("create_database", db)
        with host.client() as c:
            c.pipeline([("set", db, "X", (i,), f"{db} {i}" * 5) for i in range(100)])
    entry = {"name": "R", "superserver": r.superserver, "data_dir": str(r.data_dir)}
    return a, b, r, start_agent(pki=pki, instances=[entry])


def test_a_reporting_async_in_two_mirrors_serves_each_mirrors_journal(reporting_in_two):
    a, b, r, agent = reporting_in_two
    with agent.client() as c:
        # each as its primary wrote it, each from the membership that holds it
        wait_for(lambda: served(c, "SALES") == journal_in(a.data_dir, "SALES"), 15, "SALES")
        wait_for(lambda: served(c, "STOCK") == journal_in(b.data_dir, "STOCK"), 15, "STOCK")
        assert served(c, "SALES") == journal_in(r.data_dir, "SALES")
        assert served(c, "STOCK") == journal_in(r.data_dir / "mirrors" / "STOCK", "STOCK")
        assert sum(map(len, served(c, "SALES").values())) > 1000
        assert sum(map(len, served(c, "STOCK").values())) > 1000
        with pytest.raises(AgentError, match="no instance on this host holds journal of OTHER"):
            c.journal_files("OTHER")


def test_a_mirror_joined_again_is_served_from_its_new_membership(reporting_in_two):
    a, _, r, agent = reporting_in_two
    with agent.client() as c:
        wait_for(lambda: served(c, "SALES") == journal_in(a.data_dir, "SALES"), 15, "SALES")
        left_behind = served(c, "SALES")
    assert left_behind
    # leaving SALES keeps its journal in the data directory; joined again while in STOCK,
    # SALES is a further membership under mirrors/SALES, and its live journal is served
    r.admin("leave_mirror", {"mirror": "SALES"})
    wait_for(lambda: r.status().get("mirror") == "STOCK", 20, "R only in STOCK")
    r.admin("mirror_join", {"mirror": "SALES", "address": a.superserver, "type": "ro_reporting"})
    r.wait_state("2/2")
    with a.client() as c:
        c.pipeline([("set", "ORDERS", "Y", (i,), "later") for i in range(100)])
    with agent.client() as c:
        wait_for(lambda: served(c, "SALES") == journal_in(a.data_dir, "SALES"), 15, "SALES")
        now = served(c, "SALES")
    assert now == journal_in(r.data_dir / "mirrors" / "SALES", "SALES")
    assert journal_in(r.data_dir, "SALES") == left_behind != now

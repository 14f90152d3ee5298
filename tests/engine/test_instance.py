"""The instance's superserver: operations, transactions, pipelining, role rules."""

import asyncio

import pytest

from engine.client.app import AsyncClient, BadRequest, NoDatabase, NotPrimary, TransactionError
from tests.engine.cluster_fixtures import started_cluster

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from started_cluster(
        tmp_path_factory.mktemp("instance"), ("failover", "failover", "dr", "rw_reporting")
    )


def test_set_get_kill_order_and_query_on_the_primary(cluster):
    with cluster.client() as c:
        assert c.member_info["role"] == "primary"
        c.set("USER", "Patient", (1, "name"), "Smith")
        c.set("USER", "Patient", (2, "name"), "Jones")
        c.set("USER", "Patient", (10, "name"), "Brown")
        c.set("USER", "Patient", ("x",), b"\x00\xff")
        c.set("USER", "Patient", (2.5,), 7.25)
        assert c.get("USER", "Patient", (1, "name")) == "Smith"
        assert c.get("USER", "Patient", ("x",)) == b"\x00\xff"
        assert c.order("USER", "Patient", (2,)) == 2.5
        assert c.order("USER", "Patient", (10,)) == "x"
        assert c.order("USER", "Patient", (2.5,), -1) == 2
        rows = c.query("USER", "Patient")
        assert [s for s, _ in rows] == [(1, "name"), (2, "name"), (2.5,), (10, "name"), ("x",)]
        assert c.query("USER", "Patient", limit=2, reverse=True)[0] == (("x",), b"\x00\xff")
        c.kill("USER", "Patient", (2,))
        assert c.get("USER", "Patient", (2, "name")) is None
        c.kill("USER", "Patient")
        assert c.query("USER", "Patient") == []


def test_transaction_commits_atomically_and_reads_its_own_writes(cluster):
    with cluster.client() as c:
        c.tstart()
        c.set("APP", "Acct", (1,), 100)
        c.set("APP", "Acct", (2,), 200)
        assert c.get("APP", "Acct", (1,)) == 100
        with cluster.client() as other:
            assert other.get("APP", "Acct", (1,)) is None
        c.tcommit()
        assert c.get("APP", "Acct", (2,)) == 200


def test_rolled_back_transaction_leaves_nothing(cluster):
    with cluster.client() as c:
        c.tstart()
        c.set("APP", "Gone", (1,), "x")
        c.trollback()
        assert c.get("APP", "Gone", (1,)) is None
        with pytest.raises(TransactionError, match="no open transaction"):
            c.tcommit()


def test_many_pipelined_requests_on_one_connection_answer_in_order(cluster):
    async def run():
        async with AsyncClient(cluster.addresses()) as c:
            writes = [c.set("USER", "Pipe", (i,), f"v{i}") for i in range(500)]
            await asyncio.gather(*writes)
            reads = await asyncio.gather(*(c.get("USER", "Pipe", (i,)) for i in range(500)))
            return reads

    assert asyncio.run(run()) == [f"v{i}" for i in range(500)]


def test_sync_pipeline_mixes_operations(cluster):
    with cluster.client() as c:
        out = c.pipeline([("set", "USER", "P2", (1,), "a"), ("get", "USER", "P2", (1,)), ("ping",)])
        assert out == [None, "a", "pong"]


def test_invalid_arguments_get_bad_request_and_the_connection_goes_on(cluster):
    with cluster.client() as c:
        with pytest.raises(BadRequest, match="global name"):
            c.set("USER", "1bad", (1,), "x")
        with pytest.raises(BadRequest, match="subscript"):
            c.set("USER", "G", ([1],), "x")
        with pytest.raises(BadRequest, match="value must be"):
            c.set("USER", "G", (1,), None)
        with pytest.raises(NoDatabase, match="NOPE"):
            c.get("NOPE", "G", (1,))
        assert c.ping() == "pong"


def test_writes_on_the_backup_are_refused_naming_the_primary(cluster):
    with cluster.client("B") as c:
        with pytest.raises(NotPrimary) as info:
            c.set("USER", "G", (1,), "x")
        assert info.value.primary == "A"
        assert info.value.primary_address == cluster.address("A")
        with pytest.raises(NotPrimary, match="backup does not serve"):
            c.get("USER", "G", (1,))


def test_dr_async_serves_reads_but_refuses_writes(cluster):
    with cluster.client() as p:
        p.set("USER", "Dr", (1,), "seen")
    with cluster.client("C") as c:
        assert cluster.wait_status("C", "status", "Connected")
        from tests.engine.cluster_fixtures import wait_for

        wait_for(lambda: c.get("USER", "Dr", (1,)) == "seen", what="read on the DR async")
        with pytest.raises(NotPrimary, match="primary is A"):
            c.set("USER", "Dr", (2,), "x")


def test_read_write_reporting_async_accepts_local_writes(cluster):
    with cluster.client("D") as c:
        c.set("USER", "Local", (1,), "mine")
        assert c.get("USER", "Local", (1,)) == "mine"
    with cluster.client() as p:
        assert p.get("USER", "Local", (1,)) is None


def test_client_given_a_non_primary_first_finds_the_primary(cluster):
    from engine.client.app import Client

    with Client([cluster.address("B"), cluster.address("C"), cluster.address("A")]) as c:
        assert c.member_info["member"] == "A"
        c.set("USER", "Found", (1,), 1)


def test_a_client_that_pipelines_without_reading_does_not_stop_others(cluster):
    import contextlib
    import socket

    from engine.wire.protocol import MsgType, encode_frame

    a = cluster.cfg.member("A").superserver
    flood = b"".join(encode_frame(MsgType.GET, i, ["USER", "Pipe", [1]]) for i in range(30_000))
    with socket.create_connection((a.host, a.port)) as s:
        s.settimeout(2)
        with contextlib.suppress(TimeoutError):
            s.sendall(flood)  # the member stops reading this connection; sendall may block
        with cluster.client() as c:
            assert c.ping() == "pong"
            c.set("USER", "Other", (1,), "served")

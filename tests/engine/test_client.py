"""engine.client.app against real members: finding and following the primary, typed errors."""

import asyncio

import pytest

from engine.client.app import AsyncClient, Client, NoPrimaryFound, NotPrimary, ProtocolError
from tests.engine.cluster_fixtures import free_ports, make_cluster_fixture  # noqa: F401

pytestmark = pytest.mark.timeout(90)


def test_refused_write_on_a_non_primary_is_retried_on_the_named_primary(make_cluster):
    cluster = make_cluster(("failover", "failover", "dr"))

    async def run():
        c = AsyncClient([cluster.address("C")])
        # start out connected to the DR async, as after a role change
        conn, info = await c._open(cluster.address("C"))
        c._set_conn(conn, info)
        assert c.address == cluster.address("C")
        await c.set("USER", "Follow", (1,), "moved")
        assert c.address == cluster.address("A")
        value = await c.get("USER", "Follow", (1,))
        await c.close()
        return value

    assert asyncio.run(run()) == "moved"


def test_pinned_client_raises_not_primary_instead_of_following(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    with cluster.client("B") as c, pytest.raises(NotPrimary) as info:
        c.set("USER", "G", (1,), 1)
    assert info.value.primary == "A" and info.value.code == "not_primary"


def test_client_reconnects_to_the_primary_after_it_restarts(make_cluster):
    cluster = make_cluster(("failover",))
    with cluster.client() as c:
        c.set("USER", "Restart", (1,), "before")
        cluster.kill9("A")
        cluster.start("A")
        assert c.get("USER", "Restart", (1,)) == "before"
        c.set("USER", "Restart", (2,), "after")


def test_no_reachable_member_raises_no_primary_found():
    port = free_ports(1)[0]
    with pytest.raises(NoPrimaryFound, match=f"127.0.0.1:{port}"):
        Client([f"127.0.0.1:{port}"], timeout=1)


def test_protocol_errors_from_the_server_are_typed(make_cluster):
    cluster = make_cluster(("failover",))

    async def run():
        async with AsyncClient(cluster.addresses()) as c:
            with pytest.raises(ProtocolError, match="not a request"):
                await c.call(0x23, [])  # DC_ACK is not an application request
            return await c.ping()

    assert asyncio.run(run()) == "pong"


def test_concurrent_asyncio_clients_share_nothing_and_all_writes_land(make_cluster):
    cluster = make_cluster(("failover", "failover"))
    cluster.wait_backup_active()

    async def run():
        clients = [AsyncClient(cluster.addresses()) for _ in range(8)]
        await asyncio.gather(*(c.connect() for c in clients))
        await asyncio.gather(
            *(
                c.set("USER", "Many", (n, i), n * 1000 + i)
                for n, c in enumerate(clients)
                for i in range(50)
            )
        )
        rows = await clients[0].query("USER", "Many")
        await asyncio.gather(*(c.close() for c in clients))
        return rows

    rows = asyncio.run(run())
    assert len(rows) == 400 and rows[0] == ((0, 0), 0) and rows[-1] == ((7, 49), 7049)

"""The status poller of the agent (StatusHub) across a stop and a quick restart: a poll of
the stopped round that finishes late (Python 3.11's wait_for can lose a cancellation when
the awaited call completes at that moment) must not leak into the new round, or the next
subscriber gets a snapshot before every instance was polled.  The instances here are stand-
ins whose polls the test releases one by one; the real ones are in test_agent_stream.py."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

from engine.agent import stream as agent_stream
from engine.agent.config import AgentConfig, InstanceEntry
from engine.member.config import Address


class ReleasedPolls:
    """InstanceWatch stand-in: the first poll of each instance answers at once; later ones
    wait for a gate, and A's second poll swallows its cancellation."""

    calls: Counter
    late: asyncio.Event
    later: asyncio.Event

    def __init__(self, entry, timeout):
        self.entry = entry

    async def poll(self) -> dict:
        name = self.entry.name
        self.calls[name] += 1
        if name == "A" and self.calls[name] == 2:
            try:
                await self.late.wait()
            except asyncio.CancelledError:
                await self.late.wait()
            return {"state": "stale"}
        if name != "A" and self.calls[name] >= 2:
            await self.later.wait()
        return {"state": "up"}

    async def close(self) -> None:
        pass


def snapshot_of(sub) -> dict:
    raw = sub.queue.get_nowait().decode()
    return json.loads(raw.split("data: ", 1)[1])


def test_a_late_poll_of_a_stopped_round_does_not_make_the_next_snapshot_early(monkeypatch):
    monkeypatch.setattr(agent_stream, "InstanceWatch", ReleasedPolls)
    instances = [
        InstanceEntry(n, Address("127.0.0.1", 1), Path("/nonexistent")) for n in ("A", "B", "C")
    ]
    cfg = AgentConfig(Address("127.0.0.1", 2), instances, stream_interval_s=0.01)

    async def scenario():
        ReleasedPolls.calls = Counter()
        ReleasedPolls.late, ReleasedPolls.later = asyncio.Event(), asyncio.Event()
        hub = agent_stream.StatusHub(cfg)
        first = await hub.subscribe()
        assert set(snapshot_of(first)["instances"]) == {"A", "B", "C"}
        while ReleasedPolls.calls["A"] < 2:
            await asyncio.sleep(0.01)
        hub.unsubscribe(first)  # the poller stops; A's poll goes on regardless
        joining = asyncio.create_task(hub.subscribe())
        while ReleasedPolls.calls["A"] < 3:
            await asyncio.sleep(0.01)
        ReleasedPolls.late.set()
        await asyncio.sleep(0.2)
        assert not joining.done(), "snapshot sent before B and C were polled"
        ReleasedPolls.later.set()
        snap = snapshot_of(await asyncio.wait_for(joining, 5))
        await hub.close()
        return snap

    snap = asyncio.run(scenario())
    assert {n: r["state"] for n, r in snap["instances"].items()} == {
        "A": "up",
        "B": "up",
        "C": "up",
    }

"""Small pieces every listener and long-running service of the engine shares."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket


def accepted(transport: asyncio.BaseTransport) -> str:
    """An accepted TCP connection made ready (no Nagle delay: replies are small and awaited
    one by one) and its peer as "host:port", or "?"."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "?"


async def serve_until_signalled(start, stop) -> None:
    """await start(), then serve until SIGTERM or SIGINT, then await stop()."""
    await start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await stop()

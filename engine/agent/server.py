"""The agent: one per host, the portal's and the peers' way to reach the instances there.

    python -m engine agent --config agent.toml

It knows the instances on its host (up / down / hung, and their role) even when one is
down or hung, can force an instance down, and serves journal files to peers that catch
up (guide §3.1.3).  Its control API is versioned JSON over HTTP under /v1/, described in
engine/agent_api.yaml, and always authenticated (engine/agent/auth.py): mutual TLS with
a DN allow list, or a bearer credential.  Default port 2188.  With `arbiter` in its
configuration it also runs an arbiter on that address (engine/failover/arbiter.py).

This module serves the routes about the agent and its instances; the stream, the journal
files, the member and database operations and the mirror routes are in their own modules.
Every route is listed, with its answers, in engine/agent_api.yaml only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from aiohttp import web

from engine.agent.app_credentials import CREDENTIAL_ROUTES
from engine.agent.auth import IDENTITY, require_auth
from engine.agent.certificates import instance_certificate
from engine.agent.config import AgentConfig, ConfigError, InstanceEntry, load_agent_config
from engine.agent.errors import CONFIG, STATE, json_errors
from engine.agent.failover import FAILOVER_ROUTES
from engine.agent.health import HEALTH_ROUTES
from engine.agent.journal import list_journal_files, read_journal_file
from engine.agent.limits import (
    LIMITS,
    LimitedRequestHandler,
    LimitedTLSAcceptor,
    ListenerLimits,
    track_requests,
)
from engine.agent.mirror import MIRROR_ROUTES
from engine.agent.ops import OPS_ROUTES, instance_entry, read_body
from engine.agent.partner import PARTNER_ROUTES
from engine.agent.probe import force_down, probe
from engine.agent.stream import HUB, StatusHub, status_stream
from engine.failover.arbiter import Arbiter
from engine.wire.serving import serve_until_signalled
from engine.wire.tls import TLSError, cert_info, load_certificate, peer_certificate, server_context

AGENT_VERSION = "0.1.0"
API_VERSION = "v1"
# how long an unread request body is drained after an error reply before the connection
# closes (aiohttp waits 10 s by default, which a slow or hostile client can hold)
LINGER_S = 1.0
# header lines of one request head: aiohttp allows 128 of up to 8190 bytes, so each connection
# that never finishes its head could hold about 2 MiB of parsed lines until header_timeout_ms
# (256 of them took the agent from 49 to 530 MiB); no client of the agent sends 16
MAX_HEADERS = 32
log = logging.getLogger("engine.agent.server")


async def health(request: web.Request) -> web.Response:
    cfg: AgentConfig = request.app[CONFIG]
    state = request.app[STATE]
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    peer = peer_certificate(ssl_object)
    body = {
        "agent": "engine-agent",
        "version": AGENT_VERSION,
        "api_version": API_VERSION,
        "uptime_s": round(time.monotonic() - state["started"], 3),
        "auth": cfg.auth_mode,
        "identity": request[IDENTITY],
        "instances": len(cfg.instances),
        "tls_handshake_failures": state.get("handshake_failures", 0),
        "status_stream": request.app[HUB].stats(),
        "listener": limits.stats() if (limits := request.app.get(LIMITS)) else None,
        # the agent's own certificate and the caller's, so the portal can warn before
        # either lapses
        "certificate": cert_info(load_certificate(cfg.cert)) if cfg.cert else None,
        "client_certificate": cert_info(peer) if peer is not None else None,
    }
    return web.json_response(body)


async def list_instances(request: web.Request) -> web.Response:
    cfg: AgentConfig = request.app[CONFIG]
    rows = await asyncio.gather(*(_described(e, cfg.probe_timeout_s) for e in cfg.instances))
    return web.json_response({"instances": list(rows)})


async def _described(entry: InstanceEntry, timeout: float) -> dict:
    """The probe's answer and the instance's certificate (DN and expiry), for discovery."""
    row = await probe(entry, timeout)
    row["certificate"] = await asyncio.to_thread(instance_certificate, entry)
    return row


async def get_instance(request: web.Request) -> web.Response:
    cfg: AgentConfig = request.app[CONFIG]
    return web.json_response(await _described(instance_entry(request), cfg.probe_timeout_s))


async def force_instance_down(request: web.Request) -> web.Response:
    entry = instance_entry(request)
    await read_body(request, {})  # it takes none: a body it does not understand stops it
    result = await force_down(entry)
    log.warning(
        "force-down of instance %s requested by %s: %s",
        entry.name,
        request[IDENTITY],
        result["detail"],
    )
    return web.json_response(result)


ROUTES = [
    ("GET", "/v1/health", health),
    ("GET", "/v1/instances", list_instances),
    ("GET", "/v1/instances/{name}", get_instance),
    ("POST", "/v1/instances/{name}/force-down", force_instance_down),
    ("GET", "/v1/journal/{mirror}/files", list_journal_files),
    ("GET", "/v1/journal/{mirror}/files/{name}", read_journal_file),
    ("GET", "/v1/status/stream", status_stream),
    *OPS_ROUTES,
    *FAILOVER_ROUTES,
    *PARTNER_ROUTES,
    *MIRROR_ROUTES,
    *CREDENTIAL_ROUTES,
    *HEALTH_ROUTES,
]


def make_app(cfg: AgentConfig) -> web.Application:
    # json_errors is outermost, so auth refusals and aiohttp's own 404/405/413 are JSON too;
    # track_requests is inside it, so a request cut by a limit never reaches it as a 500
    app = web.Application(
        middlewares=[json_errors, track_requests, require_auth],
        client_max_size=cfg.max_request_bytes,
    )
    app[CONFIG] = cfg
    app[STATE] = {"started": time.monotonic()}
    app[HUB] = hub = StatusHub(cfg)

    async def end_streams(_app: web.Application) -> None:
        # streams never end by themselves; the shutdown would wait for them
        await hub.close()

    app.on_shutdown.append(end_streams)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app


class Agent:
    """A running agent (start() / stop()); used by main() and by in-process callers."""

    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self.app = make_app(cfg)
        self.limits = self.app[LIMITS] = ListenerLimits(cfg)
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        self.server: asyncio.base_events.Server | None = None
        # the arbiter for the mirrors whose failover members name this host (guide §3.1.4)
        self.arbiter = Arbiter.from_settings(cfg.arbiter) if cfg.arbiter else None

    async def start(self) -> None:
        context = None
        if self.cfg.cert is not None:
            context = server_context(
                self.cfg.cert, self.cfg.key, self.cfg.ca, require_client_cert=False
            )
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        listen = self.cfg.listen
        limits = self.limits
        limits.fit_descriptors()
        limits.install()

        def http(conn=None):
            return LimitedRequestHandler(
                self.runner.server,
                limits=limits,
                conn=conn,
                loop=loop,
                access_log=None,
                lingering_time=LINGER_S,
                max_headers=MAX_HEADERS,
            )

        if context is None:
            self.server = await loop.create_server(http, listen.host, listen.port)
        else:
            stats = self.app[STATE]
            self.server = await loop.create_server(
                lambda: LimitedTLSAcceptor(http, context, stats, limits), listen.host, listen.port
            )
        if self.arbiter is not None:  # before "agent listening": then all of it serves
            await self.arbiter.start()
        port = self.server.sockets[0].getsockname()[1]
        scheme = "https" if context else "http"
        log.info(
            "agent listening on %s://%s:%s (auth: %s, %d instances)",
            scheme,
            listen.host,
            port,
            self.cfg.auth_mode,
            len(self.cfg.instances),
        )
        log.info("%s", limits.describe())

    async def stop(self) -> None:
        if self.arbiter is not None:
            await self.arbiter.stop()
        if self.server is not None:
            self.server.close()
        await self.runner.cleanup()
        self.limits.close()


async def run_agent(cfg: AgentConfig) -> None:
    agent = Agent(cfg)
    await serve_until_signalled(agent.start, agent.stop)
    log.info("agent stopped")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine agent", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="agent configuration (TOML)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s agent %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = load_agent_config(args.config)
        asyncio.run(run_agent(cfg))
    except ConfigError as exc:
        print(f"agent configuration error: {exc}", file=sys.stderr)
        return 2
    except TLSError as exc:
        print(f"agent TLS error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"agent cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Authentication of every agent API request, and the agent's TLS handshakes.

Mutual TLS (the configuration has a client CA): the client must present a certificate
issued by that CA and in date (OpenSSL checks it during the handshake), and its subject
DN, in RFC 4514 form, must be on the configuration's allow list.  A client without a
certificate gets 401, a DN not on the list 403.

Credential (no client CA): `Authorization: Bearer <credential>`, compared in constant
time; missing or wrong gets 401.

TLS handshakes are done by TLSAcceptor rather than by the listening socket itself, so a
refused handshake (unknown CA, expired certificate, no TLS at all) is logged with its
reason and the peer address; asyncio would otherwise drop it silently.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl

from aiohttp import web

from engine.agent.config import AgentConfig
from engine.agent.errors import CONFIG, api_error
from engine.wire.tls import describe_ssl_error, peer_dn

log = logging.getLogger("engine.agent.server")

HANDSHAKE_TIMEOUT = 10.0
IDENTITY = "identity"  # request key holding the caller's DN or "credential"


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()


def authenticate(cfg: AgentConfig, request: web.Request) -> str:
    """The caller's identity (a DN, or "credential"); raises 401/403 APIError otherwise."""
    if cfg.mutual_tls:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        dn = peer_dn(ssl_object)
        if dn is None:
            raise api_error(
                401,
                "certificate_required",
                "this agent requires mutual TLS: present a client certificate issued by its CA",
            )
        if dn not in cfg.allowed_dns:
            raise api_error(
                403,
                "dn_not_allowed",
                f"client certificate DN {dn!r} is not on this agent's allow list",
            )
        return dn
    token = _bearer(request)
    challenge = {"WWW-Authenticate": 'Bearer realm="engine-agent"'}
    if token is None:
        raise api_error(
            401, "credential_required", "missing 'Authorization: Bearer <credential>'", challenge
        )
    # compare_digest on bytes: constant time whatever the token holds (undecodable bytes
    # in the header arrive as surrogate escapes and are compared as the bytes they were)
    if not hmac.compare_digest(token.encode(errors="surrogateescape"), cfg.credential.encode()):
        raise api_error(401, "wrong_credential", "the agent credential is not valid", challenge)
    return "credential"


PROOF_CHECKED = "/v1/failover/"  # a partner member proves the mirror secret (agent/partner.py)


@web.middleware
async def require_auth(request: web.Request, handler):
    cfg: AgentConfig = request.app[CONFIG]
    if request.path.startswith(PROOF_CHECKED) and request.method == "POST":
        request[IDENTITY] = "a failover member (mirror secret proof)"
        return await handler(request)
    request[IDENTITY] = authenticate(cfg, request)
    return await handler(request)


class TLSAcceptor(asyncio.Protocol):
    """Accepts a TCP connection, does the TLS handshake, then hands the TLS transport to
    the HTTP protocol made by `factory` (aiohttp's request handler)."""

    def __init__(self, factory, context: ssl.SSLContext, stats: dict):
        self.factory = factory
        self.context = context
        self.stats = stats

    def connection_made(self, transport: asyncio.Transport) -> None:
        # nothing may be read before start_tls takes over the transport
        transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._handshake(transport))
        self.stats.setdefault("tasks", set()).add(task)
        task.add_done_callback(self.stats["tasks"].discard)

    async def _handshake(self, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if peer else "?"
        protocol = self.factory()
        loop = asyncio.get_running_loop()
        try:
            tls_transport = await loop.start_tls(
                transport,
                protocol,
                self.context,
                server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
            self.stats["handshake_failures"] = self.stats.get("handshake_failures", 0) + 1
            reason = describe_ssl_error(exc) if str(exc) else type(exc).__name__
            if "unable to get local issuer certificate" in reason:
                reason += " (the client certificate was issued by a CA this agent does not trust)"
            log.warning("TLS handshake with %s refused: %s", where, reason)
            transport.abort()
            return
        if tls_transport is None:  # the peer went away during the handshake
            transport.abort()
            return
        protocol.connection_made(tls_transport)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - reading is paused
        pass

    def eof_received(self) -> bool:
        return False

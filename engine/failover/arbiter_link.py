"""A failover member's contact with the arbiter (engine/failover/arbiter.py).

    link = ArbiterLink("arb-host:2189", "M", "A", "B", secret=secret, timeout_ms=qos_ms,
                       on_change=lambda link: ...)
    link.start()                # a task on the running loop; reconnects with backoff
    link.connected              # registered with the arbiter now (since link.connected_at)
    link.partner_seen           # the arbiter sees B, and B proved the mirror secret
    link.status                 # ARBITER_BOTH / ARBITER_ONLY_THIS / ..._NOT_CONNECTED (rules.py)
    link.report({"mode": ..., "role": ...})   # relayed to the partner at once
    await link.stop()

The link sends its hello with proof = arbiter_proof(secret, mirror, member, the arbiter's nonce)
and pings every timeout/4.  Every ARB_STATE (a ping's reply or a push) lists the registrations
under the partner's name; the partner counts as seen only if one of them carries a proof
that checks with the mirror secret (or, on a TLS link without a secret, one the arbiter
checked by its certificate).  So a stranger that registers as the partner never makes this
member see it; the arbiter, which knows no secret, cannot forge one either — though a party
that poses as the arbiter itself could replay a proof it recorded: against that, TLS.

The arbiter is lost when the connection closes, a hello is refused, or nothing came from it
within the timeout (the deadline is read afresh from the last frame at every read).  Then
`connected` and `partner_seen` turn false at once (the callback is told) and the link
reconnects after a backoff from 50 ms doubling to 2 s, reset by a successful registration.

`on_change(link)` is called (in the loop) at every change of connected, partner_seen or the
partner's relayed state; `changed_at` is the time.monotonic() of the last one.  What the link
knows of the partner outlives its loss: `partner_state` (the state it last relayed) and
`partner_heard_at` (time.monotonic() when the arbiter last heard it), which is how a member
tells whether the arbiter heard its partner after its own link to the partner broke
(`heard_partner_since`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable

from engine.rules import (
    ARBITER_BOTH,
    ARBITER_NOT_CONNECTED,
    ARBITER_ONLY_THIS,
    FAILOVER,
    check_member_name,
    check_mirror_name,
)
from engine.wire import mirror_secret
from engine.wire.limits import TokenBucket
from engine.wire.protocol import (
    FrameError,
    MsgType,
    encode_frame,
    read_frame,
    unpack,
)

log = logging.getLogger("engine.failover.arbiter_link")

# ARB_STATE lists at most a few registrations (engine/failover/arbiter.py MAX_PER_KEY)
MAX_STATE_FRAME = 64 * 1024
BACKOFF_S = (0.05, 2.0)
DEFAULT_TIMEOUT_MS = 8000  # the default QoS timeout (docs/mirroring-model.md §4.3)
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 100, 600_000  # what the arbiter accepts (its QoS range)
# states reported in a burst go out together: the arbiter closes a connection that pings
# more than 100 times a second (engine/failover/arbiter.py PING_RATE)
MIN_PING_GAP_S = 0.02


class ArbiterRefused(Exception):
    """The arbiter answered ERROR (the hello refused, or the registration dropped)."""


class ArbiterLink:
    def __init__(
        self,
        address: str | tuple[str, int],
        mirror: str,
        member: str,
        partner: str,
        *,
        secret: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        state: dict | None = None,
        on_change: Callable[[ArbiterLink], None] | None = None,
        backoff_s: tuple[float, float] = BACKOFF_S,
    ):
        if isinstance(address, str):
            host, _, port = address.rpartition(":")
            address = (host.strip("[]"), int(port))
        self.host, self.port = address
        self.mirror = check_mirror_name(mirror)
        self.member = check_member_name(member, FAILOVER)
        self.partner = check_member_name(partner, FAILOVER)
        if secret is not None:
            mirror_secret.check_secret(secret)
        elif ssl_context is None:
            raise ValueError("without TLS an arbiter link needs the mirror secret")
        if type(timeout_ms) is not int or not MIN_TIMEOUT_MS <= timeout_ms <= MAX_TIMEOUT_MS:
            raise ValueError(f"timeout_ms must be {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS}")
        self.secret = secret
        self.ssl = ssl_context
        self.server_hostname = server_hostname
        self.timeout_s = timeout_ms / 1000
        self.timeout_ms = timeout_ms
        self.state = dict(state or {})
        self.on_change = on_change
        self.backoff_s = backoff_s
        # what the link knows
        self.connected = False
        self.connected_at: float | None = None  # time.monotonic() of this registration
        self.partner_seen = False
        self.partner_state: dict | None = None
        self.partner_heard_at: float | None = None
        self.unverified = 0  # registrations under the partner's name whose proof fails
        self.changed_at = time.monotonic()
        self.error: str | None = None  # why the last connection ended
        self.registrations = 0  # successful hellos, for the logs and tests
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._req = 1
        self._stopping = False
        self._verified: dict[tuple[bytes, bytes], bool] = {}
        self._warnings = TokenBucket(0.1, 3)  # strangers coming and going: a few lines only

    # -- what the member reads -----------------------------------------------------------
    @property
    def status(self) -> str:
        """The arbiter connection as a failover member reports it (engine/rules.py)."""
        if not self.connected:
            return ARBITER_NOT_CONNECTED
        return ARBITER_BOTH if self.partner_seen else ARBITER_ONLY_THIS

    def heard_partner_since(self, moment: float) -> bool:
        """Did the arbiter hear the (verified) partner after `moment` (time.monotonic())?"""
        return self.partner_heard_at is not None and self.partner_heard_at > moment

    def report(self, state: dict) -> None:
        """This member's state, relayed to the partner: sent at once when connected."""
        self.state = dict(state)
        self._wake.set()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> asyncio.Task:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True
        while task is not None and not task.done():
            # again until it ends: asyncio.wait_for (3.11) may swallow a cancellation that
            # meets a frame arriving, and the loops check _stopping besides
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        self._set(connected=False)

    async def _run(self) -> None:
        delay = self.backoff_s[0]
        while not self._stopping:
            before = self.registrations
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (OSError, EOFError, FrameError, TimeoutError, ArbiterRefused, ValueError) as exc:
                self._lost(exc)
            except Exception as exc:  # a bug must not end the contact for good
                log.exception("arbiter link %s/%s: unexpected error", self.mirror, self.member)
                self._lost(exc)
            if self.registrations != before:
                delay = self.backoff_s[0]
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff_s[1])

    def _lost(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.IncompleteReadError):
            text = "the arbiter closed the connection"
        elif isinstance(exc, TimeoutError):
            text = str(exc) or "timed out"
        else:
            text = str(exc) or type(exc).__name__
        if text != self.error or self.connected:
            level = logging.WARNING if isinstance(exc, ArbiterRefused) else logging.INFO
            log.log(level, "arbiter link %s/%s to %s:%s: %s", self.mirror, self.member,
                    self.host, self.port, text)  # fmt: skip
        self.error = text
        self._set(connected=False)

    # -- one connection --------------------------------------------------------------------
    async def _read(self, reader: asyncio.StreamReader, deadline: float):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"nothing from the arbiter within {self.timeout_ms} ms")
        try:
            return await asyncio.wait_for(read_frame(reader, MAX_STATE_FRAME), remaining)
        except TimeoutError:
            raise TimeoutError(f"nothing from the arbiter within {self.timeout_ms} ms") from None

    async def _session(self) -> None:
        start = time.monotonic()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=(self.server_hostname or self.host) if self.ssl else None,
            ),
            self.timeout_s,
        )
        pinger = None
        try:
            frame = await self._read(reader, start + self.timeout_s)
            body = self._body(frame, MsgType.ARB_CHALLENGE)
            nonce = mirror_secret.check_nonce(body.get("nonce") if isinstance(body, dict) else None)
            hello = {
                "mirror": self.mirror,
                "member": self.member,
                "peer": self.partner,
                "timeout_ms": self.timeout_ms,
                "proof": (
                    mirror_secret.arbiter_proof(self.secret, self.mirror, self.member, nonce)
                    if self.secret
                    else None
                ),
                "state": self.state,
            }
            writer.write(encode_frame(MsgType.ARB_HELLO, 1, hello))
            frame = await self._read(reader, time.monotonic() + self.timeout_s)
            body = self._body(frame, MsgType.ARB_STATE)
            heard = time.monotonic()
            self.registrations += 1
            self.error = None
            log.info(
                "arbiter link %s/%s: registered with %s:%s (partner %s, timeout %d ms)",
                self.mirror, self.member, self.host, self.port, self.partner, self.timeout_ms,
            )  # fmt: skip
            self._apply(body, connected=True)
            pinger = asyncio.create_task(self._pinger(writer))
            while not self._stopping:
                # the deadline is read afresh from the last frame heard at every read
                frame = await self._read(reader, heard + self.timeout_s)
                heard = time.monotonic()
                self._apply(self._body(frame, MsgType.ARB_STATE), connected=True)
        finally:
            if pinger is not None:
                pinger.cancel()
                with contextlib.suppress(BaseException):
                    await pinger  # ended here, not left pending on a loop that may close
            writer.close()

    def _body(self, frame, expected: int):
        if frame.type == MsgType.ERROR:
            try:
                err = unpack(frame.body)
                message = err.get("message") if isinstance(err, dict) else str(err)
            except ValueError:
                message = "unreadable error"
            raise ArbiterRefused(f"the arbiter refused: {message}")
        if frame.type != expected:
            raise ValueError(f"the arbiter sent message type {frame.type}, expected {expected}")
        return unpack(frame.body)

    async def _pinger(self, writer: asyncio.StreamWriter) -> None:
        interval = self.timeout_s / 4
        self._wake.set()  # a state reported while disconnected goes out at once
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            self._req = self._req + 1 if self._req < 0xFFFFFFFF else 2  # 0: pushes
            writer.write(encode_frame(MsgType.ARB_PING, self._req, {"state": self.state}))
            await asyncio.sleep(MIN_PING_GAP_S)

    # -- what an ARB_STATE says ----------------------------------------------------------
    def _check(self, entry: dict) -> bool:
        if self.secret is None:
            # a TLS link without a secret: the arbiter checked the partner's certificate
            return entry.get("tls") is True
        nonce, proof = entry.get("nonce"), entry.get("proof")
        if not isinstance(nonce, bytes) or not isinstance(proof, bytes):
            return False
        key = (nonce, proof)
        ok = self._verified.get(key)
        if ok is None:
            expected = mirror_secret.arbiter_proof(self.secret, self.mirror, self.partner, nonce)
            ok = mirror_secret.same(expected, proof)
            if len(self._verified) >= 64:
                self._verified.clear()
            self._verified[key] = ok
        return ok

    def _apply(self, body: object, connected: bool) -> None:
        if not isinstance(body, dict) or body.get("peer") != self.partner:
            raise ValueError("the arbiter sent a state that is not about this member's partner")
        entries = [e for e in body.get("peers") or [] if isinstance(e, dict)]
        good = [e for e in entries if self._check(e)]
        unverified = len(entries) - len(good)
        if unverified != self.unverified and unverified and self._warnings.take():
            log.warning(
                "arbiter link %s/%s: %d registration(s) under the partner's name %s do not "
                "prove the mirror secret: ignored",
                self.mirror, self.member, unverified, self.partner,
            )  # fmt: skip
        self.unverified = unverified
        state = self.partner_state
        if good:
            freshest = min(good, key=lambda e: e.get("heard_ms") or 0)
            heard_ms = freshest.get("heard_ms")
            if isinstance(heard_ms, int) and heard_ms >= 0:
                self.partner_heard_at = time.monotonic() - heard_ms / 1000
            if isinstance(freshest.get("state"), dict):
                state = freshest["state"]
        self._set(connected=connected, partner_seen=bool(good), partner_state=state)

    def _set(self, connected: bool, partner_seen: bool = False, partner_state=None) -> None:
        if partner_state is None:
            partner_state = self.partner_state
        if (connected, partner_seen, partner_state) == (
            self.connected,
            self.partner_seen,
            self.partner_state,
        ):
            return
        if connected and not self.connected:
            self.connected_at = time.monotonic()
        elif not connected:
            self.connected_at = None
        self.connected, self.partner_seen, self.partner_state = (
            connected,
            partner_seen,
            partner_state,
        )
        self.changed_at = time.monotonic()
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:  # the member's callback must not end the contact
                log.exception("arbiter link %s/%s: on_change failed", self.mirror, self.member)

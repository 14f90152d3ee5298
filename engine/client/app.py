"""Client library for mirror members (the superserver protocol, see PROTOCOL.md).

    from engine.client.app import Client
    with Client(["127.0.0.1:21100", "127.0.0.1:21110"]) as c:
        c.set("USER", "Patient", (1, "name"), "Smith")
        c.get("USER", "Patient", (1, "name"))

`AsyncClient` is the asyncio API (same methods, awaitable; many calls may be in flight
on one connection: asyncio.gather() pipelines them).  `Client` is a blocking wrapper
that runs an AsyncClient on a private event loop thread; `Client.pipeline()` sends a
list of operations in one go.

The client finds the primary among the given addresses (asking each member with INFO),
and follows it: a "not primary" error names the current primary, so the client
reconnects there and retries the refused request.  follow_primary=False pins the client
to the first reachable member (reads on a reporting async).

Authentication (engine/member/app_auth.py): an instance may require it on its application
port.  `credential=(name, secret)` authenticates every connection the client opens with that
application credential (a challenge-response: the secret never travels, and the client checks
the instance's answer, so it knows it spoke to an instance holding the credential); an
`admin_token` authenticates as the instance's operator.  Without either, an instance that
requires authentication serves only PING, INFO and STATUS, and answers anything else with
`Unauthorized`.

    with Client(["127.0.0.1:21100"], credential=("billing", secret)) as c: ...

TLS (docs/hardening.md "Application port TLS"): an instance with TLS configured speaks TLS on
its application port, and by default admits only clients presenting a certificate from its CA.
`ca=` (the CA that issued the members' certificates), `cert=` and `key=` (the client's own),
or `ssl=` an ssl.SSLContext made by the caller; the server's certificate is verified, its
name against the address's host.  The blocking Client, an operator's tool, takes them from
ENGINE_TLS_CA, ENGINE_TLS_CERT and ENGINE_TLS_KEY when given none of them.

    with Client(["db1:21100"], ca="ca.pem", cert="app.pem", key="app-key.pem",
                credential=("billing", secret)) as c: ...
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import ssl
import threading
from typing import Any

from engine.wire import app_credentials as ac
from engine.wire import tls
from engine.wire.admin_token import TOKEN_ENV
from engine.wire.protocol import (
    DEFAULT_MAX_FRAME,
    BadFrame,
    ErrorCode,
    FrameDecoder,
    FrameError,
    MsgType,
    encode_frame,
    unpack,
)


class EngineError(Exception):
    """Base of every error the client raises."""

    def __init__(self, message: str, code: str = ErrorCode.INTERNAL, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class ProtocolError(EngineError):
    pass


class BadRequest(EngineError):
    pass


class NoDatabase(BadRequest):
    pass


class NotPrimary(EngineError):
    @property
    def primary(self) -> str | None:
        return self.details.get("primary")

    @property
    def primary_address(self) -> str | None:
        return self.details.get("primary_address")


class ReadOnly(EngineError):
    pass


class TransactionError(EngineError):
    pass


class Unavailable(EngineError):
    pass


class Refused(EngineError):
    """An admin operation whose precondition does not hold."""

    @property
    def reason(self) -> str | None:
        return self.details.get("reason")


class ConnectionLost(EngineError):
    pass


class OutcomeUnknown(ConnectionLost):
    """A write was sent and its answer never came (the connection was lost, the member
    stopped, a failover happened): it may or may not be in the mirror.  Never retried as if
    new; the caller reads back to find out (docs/takeover.md, "Clients")."""


class Unauthorized(EngineError):
    """Authentication required or failed, or an admin action without the admin token."""


class NoPrimaryFound(EngineError):
    pass


# a write whose answer was lost: the client's own code (engine/PROTOCOL.md, "Error codes")
OUTCOME_UNKNOWN = "outcome_unknown"
WRITES = frozenset({MsgType.SET, MsgType.KILL, MsgType.TCOMMIT})

_ERRORS = {
    ErrorCode.PROTOCOL: ProtocolError,
    ErrorCode.BAD_REQUEST: BadRequest,
    ErrorCode.NO_DATABASE: NoDatabase,
    ErrorCode.NOT_PRIMARY: NotPrimary,
    ErrorCode.READ_ONLY: ReadOnly,
    ErrorCode.TRANSACTION: TransactionError,
    ErrorCode.UNAVAILABLE: Unavailable,
    ErrorCode.REFUSED: Refused,
    ErrorCode.UNAUTHORIZED: Unauthorized,
}


def error_from_reply(body: Any) -> EngineError:
    if not isinstance(body, dict):
        return ProtocolError(f"malformed error reply: {body!r}", ErrorCode.PROTOCOL)
    code = body.get("code", ErrorCode.INTERNAL)
    details = {k: v for k, v in body.items() if k not in ("code", "message")}
    return _ERRORS.get(code, EngineError)(body.get("message", "error"), code, details)


# the blocking Client's TLS files when it is given none (an operator's shell, like TOKEN_ENV)
TLS_ENV = {"ca": "ENGINE_TLS_CA", "cert": "ENGINE_TLS_CERT", "key": "ENGINE_TLS_KEY"}


def _lost(conn: _Connection, exc: Exception | None) -> str:
    why = f": {tls.describe_ssl_error(exc)}" if isinstance(exc, ssl.SSLError) else ""
    if not why and not conn.answered and conn.plain:
        why = (
            " before any answer (a superserver that speaks TLS closes a plain connection so: "
            "give the client ca, cert and key)"
        )
    elif not why and not conn.answered:  # the server ends a refused handshake without a word
        why = (
            " before any answer (the instance refused this client's TLS handshake? by default "
            "it requires a client certificate from its CA)"
        )
    return f"connection to {conn.address} lost{why}"


def _term(info: dict) -> int:
    state = info.get("failover_state")
    term = state.get("term") if isinstance(state, dict) else None
    return term if isinstance(term, int) else 0


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {tls.describe_ssl_error(exc)}"
    return str(exc) or type(exc).__name__


def split_address(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


class _Connection(asyncio.Protocol):
    def __init__(self, max_frame: int):
        self.decoder = FrameDecoder(max_frame)
        self.transport: asyncio.Transport | None = None
        self.waiting: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.lost: Exception | None = None
        self.address = ""
        self.plain = True  # no TLS on this connection
        self.answered = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.plain = transport.get_extra_info("ssl_object") is None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, mtype: int, args: list) -> asyncio.Future:
        if self.lost is not None or self.transport is None:
            raise ConnectionLost(f"connection to {self.address} is closed", ErrorCode.UNAVAILABLE)
        req_id = next(self.ids) & 0xFFFFFFFF
        fut = asyncio.get_running_loop().create_future()
        self.waiting[req_id] = fut
        self.transport.write(encode_frame(mtype, req_id, args))
        return fut

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            self._fail(
                ProtocolError(
                    f"bad reply stream from {self.address}: {exc.reason}", ErrorCode.PROTOCOL
                )
            )
            self.transport.close()
            return
        for f in frames:
            fut = self.waiting.pop(f.req_id, None)
            if isinstance(f, BadFrame):
                err = ProtocolError(f.reason, ErrorCode.PROTOCOL)
                if fut is None:
                    self._fail(err)
                elif not fut.done():
                    fut.set_exception(err)
                continue
            if fut is None:
                if f.type == MsgType.ERROR:  # stream-level error from the server (request id 0)
                    self._fail(error_from_reply(unpack(f.body)))
                continue
            if fut.done():
                continue
            try:
                body = unpack(f.body)
            except ValueError as exc:
                fut.set_exception(ProtocolError(str(exc), ErrorCode.PROTOCOL))
                continue
            if f.type == MsgType.OK:
                fut.set_result(body)
            else:
                fut.set_exception(error_from_reply(body))

    def _fail(self, exc: Exception) -> None:
        waiting, self.waiting = self.waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("closed")
        self._fail(ConnectionLost(_lost(self, exc), ErrorCode.UNAVAILABLE))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


async def _with_timeout(fut: asyncio.Future, timeout: float):
    # call_later is much cheaper than asyncio.wait_for, which creates a task per request
    handle = asyncio.get_running_loop().call_later(timeout, _expire, fut)
    try:
        return await fut
    finally:
        handle.cancel()


class AsyncClient:
    def __init__(
        self,
        addresses: list[str] | str,
        *,
        follow_primary: bool = True,
        timeout: float = 10.0,
        retries: int = 20,
        max_frame: int = DEFAULT_MAX_FRAME,
        admin_token: str | None = None,
        credential: tuple[str, str] | None = None,
        ssl: ssl.SSLContext | None = None,
        ca: str | os.PathLike | None = None,
        cert: str | os.PathLike | None = None,
        key: str | os.PathLike | None = None,
        plain_fallback: bool = False,
    ):
        if credential is not None and (
            len(credential) != 2 or not all(isinstance(x, str) and x for x in credential)
        ):
            raise ValueError("credential must be (name, secret)")
        self.credential = credential
        self._salted: dict[tuple[str, int], bytes] = {}  # (salt, iterations) -> salted secret
        # operator actions carry the instance's admin token (engine/member/admin_auth.py); the
        # engine's own calls to other members are given none, so never send theirs away
        self.admin_token = admin_token
        self.addresses = [addresses] if isinstance(addresses, str) else list(addresses)
        if not self.addresses:
            raise ValueError("at least one member address is needed")
        self.follow_primary = follow_primary
        self.timeout = timeout
        self.retries = retries
        self.max_frame = max_frame
        if ssl is not None and (ca or cert or key):
            raise ValueError("give ssl= or ca=/cert=/key=, not both")
        if ssl is None and (ca or cert or key):
            ssl = tls.client_context(cert, key, ca)  # TLSError names the file and the reason
        self.ssl = ssl
        # the engine's members asking each other's open requests (engine/member/node.py): a
        # superserver that answers a TLS hello in plain is asked again in plain
        self.plain_fallback = plain_fallback
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future | None = None
        self.member_info: dict | None = None
        self._in_txn = False

    @property
    def address(self) -> str | None:
        return self._conn.address if self._conn else None

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _open(self, addr: str) -> tuple[_Connection, dict]:
        host, port = split_address(addr)
        loop = asyncio.get_running_loop()

        def connect(ctx):
            made = loop.create_connection(lambda: _Connection(self.max_frame), host, port, ssl=ctx)
            return asyncio.wait_for(made, self.timeout)

        try:
            _, conn = await connect(self.ssl)
        except ssl.SSLError as exc:
            if not (self.plain_fallback and tls.speaks_plain(exc)):
                raise
            _, conn = await connect(None)
        conn.address = addr
        try:
            auth = await self._authenticate(conn)
            try:
                info = await asyncio.wait_for(conn.request(MsgType.INFO, []), self.timeout)
            except EngineError:
                if auth is not None:  # its outcome is read here or never
                    auth[0].add_done_callback(lambda f: f.cancelled() or f.exception())
                # a refused credential: the instance answers, then closes the connection
                done = auth and auth[0].done() and not auth[0].cancelled()
                refused = auth[0].exception() if done else None
                if isinstance(refused, Unauthorized) and auth[1] is not None:
                    raise refused from None
                raise
            if auth is not None:
                await self._check_auth(conn, auth)
        except BaseException:
            conn.close()
            raise
        return conn, info

    async def _authenticate(self, conn: _Connection) -> tuple | None:
        """Send this client's authentication (the INFO that follows is pipelined behind it)."""
        if self.credential is not None:
            name, secret = self.credential
            challenge = await asyncio.wait_for(
                conn.request(MsgType.ADMIN, [ac.CHALLENGE_ACTION, {"name": name}]), self.timeout
            )
            if not isinstance(challenge, dict) or challenge.get("mechanism") != ac.MECHANISM:
                raise ProtocolError(f"unexpected challenge from {conn.address}: {challenge!r}")
            salt, iterations = challenge["salt"], challenge["iterations"]
            salted = self._salted.get((salt, iterations))
            if salted is None:
                if not isinstance(iterations, int) or not 1 <= iterations <= 10_000_000:
                    raise ProtocolError(f"unexpected iteration count {iterations!r}")
                salted = ac.salted_password(secret, ac.unb64(salt, "salt"), iterations)
                self._salted = {(salt, iterations): salted}
            client_key, stored_key, server_key = ac.derive_keys(salted)
            nonce = ac.new_nonce()
            message = ac.auth_message(name, challenge["nonce"], nonce)
            proof = ac.b64(ac.client_proof(client_key, stored_key, message))
            fut = conn.request(
                MsgType.ADMIN, [ac.AUTH_ACTION, {"name": name, "nonce": nonce, "proof": proof}]
            )
            return fut, ac.server_signature(server_key, message)
        if self.admin_token is not None:
            return conn.request(MsgType.ADMIN, [ac.AUTH_ACTION, None, self.admin_token]), None
        return None

    async def _check_auth(self, conn: _Connection, auth: tuple) -> None:
        fut, signature = auth
        try:
            answer = await asyncio.wait_for(fut, self.timeout)
        except Unauthorized:
            if signature is None:
                return  # a wrong admin token: admin actions will say so, if they are sent
            raise
        if signature is not None:
            given = answer.get("server_signature") if isinstance(answer, dict) else None
            if given != ac.b64(signature):
                raise Unauthorized(
                    f"{conn.address} did not prove it holds the credential", ErrorCode.UNAUTHORIZED
                )

    async def connect(self, hint: str | None = None) -> None:
        """Connect to the primary (or, without follow_primary, to the first member that answers)."""
        candidates = ([hint] if hint else []) + [a for a in self.addresses if a != hint]
        errors = []
        tried: set[str] = set()
        troubled = None  # a primary in trouble: used only if no other primary answers
        while candidates:
            addr = candidates.pop(0)
            if addr in tried:
                continue
            tried.add(addr)
            try:
                conn, info = await self._open(addr)
            except Unauthorized:
                raise  # the credential is refused: another member would refuse it too
            except (TimeoutError, OSError, EngineError) as exc:
                errors.append(f"{addr}: {_why(exc)}")
                continue
            if self.follow_primary and info.get("role") == "primary" and info.get("in_trouble"):
                # it may be an isolated primary its backup has replaced (docs/takeover.md):
                # prefer a primary at a later term among the other addresses
                if troubled is None or _term(info) > _term(troubled[1]):
                    if troubled is not None:
                        troubled[0].close()
                    troubled = (conn, info)
                else:
                    conn.close()
                continue
            if not self.follow_primary or info.get("role") == "primary":
                if troubled is not None and _term(troubled[1]) > _term(info):
                    conn.close()
                    continue
                if troubled is not None:
                    troubled[0].close()
                self._set_conn(conn, info)
                return
            conn.close()
            primary = info.get("primary_address")
            if primary and primary not in tried:
                candidates.insert(0, primary)
            errors.append(f"{addr}: member {info.get('member')} is {info.get('role')}")
        if troubled is not None:
            self._set_conn(*troubled)
            return
        raise NoPrimaryFound("no primary found: " + "; ".join(errors), ErrorCode.UNAVAILABLE)

    def _set_conn(self, conn: _Connection, info: dict) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = conn
        self.member_info = info

    async def _ensure(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.lost is None:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self.connect())
        try:
            await asyncio.shield(self._connecting)
        finally:
            self._connecting = None
        return self._conn

    async def call(self, mtype: int, args: list) -> Any:
        """Send one request; follow the primary on NotPrimary / lost connections.  A write
        (SET, KILL, TCOMMIT) whose answer is lost after it was sent is OutcomeUnknown, never
        sent again: it may have been committed."""
        delay = 0.02
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            sent = False
            try:
                conn = self._conn
                if conn is None or conn.lost is not None:
                    conn = await self._ensure()
                answer = conn.request(mtype, args)
                sent = True
                return await _with_timeout(answer, self.timeout)
            except NotPrimary as exc:
                if not self.follow_primary or last or self._in_txn:
                    raise
                hint = exc.primary_address
                self._drop()
                await self._reconnect(hint)
            except (TimeoutError, ConnectionLost, NoPrimaryFound, OSError) as exc:
                # inside a transaction SET and KILL are only buffered; its commit is the write
                committing = mtype == MsgType.TCOMMIT or not self._in_txn
                if sent and mtype in WRITES and committing:
                    self._in_txn = False
                    self._drop()
                    raise OutcomeUnknown(
                        f"the write was sent to {conn.address} but its answer was lost "
                        f"({_why(exc)}): it may or may not have been committed; read it back",
                        OUTCOME_UNKNOWN,
                    ) from exc
                if self._in_txn:
                    self._in_txn = False
                    raise TransactionError(
                        f"connection lost during a transaction: {exc}", ErrorCode.TRANSACTION
                    ) from exc
                if last:
                    if isinstance(exc, EngineError):
                        raise
                    raise ConnectionLost(
                        f"request failed: {exc or type(exc).__name__}", ErrorCode.UNAVAILABLE
                    ) from exc
                self._drop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        raise AssertionError("unreachable")

    async def _reconnect(self, hint: str | None) -> None:
        try:
            await self.connect(hint)
        except NoPrimaryFound:
            await asyncio.sleep(0.05)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        self._drop()

    # -- operations --------------------------------------------------------
    async def ping(self) -> str:
        return await self.call(MsgType.PING, [])

    async def info(self) -> dict:
        return await self.call(MsgType.INFO, [])

    async def get(self, db: str, gname: str, subs=()) -> Any:
        return await self.call(MsgType.GET, [db, gname, list(subs)])

    async def set(self, db: str, gname: str, subs, value) -> None:
        return await self.call(MsgType.SET, [db, gname, list(subs), value])

    async def kill(self, db: str, gname: str, subs=()) -> None:
        return await self.call(MsgType.KILL, [db, gname, list(subs)])

    async def order(self, db: str, gname: str, subs, direction: int = 1):
        return await self.call(MsgType.ORDER, [db, gname, list(subs), direction])

    async def query(
        self, db, gname, prefix=(), start=None, stop=None, reverse=False, limit=None
    ) -> list:
        rows = await self.call(
            MsgType.QUERY,
            [
                db,
                gname,
                list(prefix),
                None if start is None else list(start),
                None if stop is None else list(stop),
                reverse,
                limit,
            ],
        )
        return [(tuple(s), v) for s, v in rows]

    async def tstart(self) -> None:
        await self.call(MsgType.TSTART, [])
        self._in_txn = True

    async def tcommit(self) -> None:
        try:
            await self.call(MsgType.TCOMMIT, [])
        finally:
            self._in_txn = False

    async def trollback(self) -> None:
        try:
            await self.call(MsgType.TROLLBACK, [])
        finally:
            self._in_txn = False

    async def status(self, mirror: str | None = None) -> dict:
        """Member status; `mirror` picks one membership of an instance in several."""
        return await self.call(MsgType.STATUS, [] if mirror is None else [mirror])

    async def admin(self, action: str, arg=None):
        if self.admin_token is not None:
            return await self.call(MsgType.ADMIN, [action, arg, self.admin_token])
        return await self.call(MsgType.ADMIN, [action] if arg is None else [action, arg])


_SYNC_METHODS = (
    "ping",
    "info",
    "get",
    "set",
    "kill",
    "order",
    "query",
    "tstart",
    "tcommit",
    "trollback",
    "status",
    "admin",
)


class Client:
    """Blocking client: the AsyncClient's methods, run on a private event loop thread.  An
    operator's tool: given no admin token, it sends ENGINE_ADMIN_TOKEN if that is set."""

    def __init__(self, addresses: list[str] | str, **kwargs: Any):
        if kwargs.get("admin_token") is None:
            kwargs["admin_token"] = os.environ.get(TOKEN_ENV)
        if "ssl" not in kwargs and not any(kwargs.get(k) for k in TLS_ENV):
            kwargs.update({k: v for k, name in TLS_ENV.items() if (v := os.environ.get(name))})
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="engine-client", daemon=True
        )
        self._thread.start()
        self._async = AsyncClient(addresses, **kwargs)
        try:
            self._run(self._async.connect())
        except BaseException:
            self.close()
            raise

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str):
        if name in _SYNC_METHODS:
            method = getattr(self._async, name)
            return lambda *a, **kw: self._run(method(*a, **kw))
        raise AttributeError(name)

    @property
    def address(self) -> str | None:
        return self._async.address

    @property
    def member_info(self) -> dict | None:
        return self._async.member_info

    def pipeline(self, ops: list[tuple]) -> list:
        """Send many operations at once: [("set", db, gname, subs, value), ("get", ...), ...].

        Returns their results in order; the first failure is raised.
        """

        async def run():
            return await asyncio.gather(*(getattr(self._async, op[0])(*op[1:]) for op in ops))

        return self._run(run())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._loop.is_running():
            try:
                self._run(self._async.close())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

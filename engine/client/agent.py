"""A small blocking client of the agent API (tests, the cluster launcher, the portal's jobs).

    with AgentClient("https://127.0.0.1:2188", cert=..., key=..., ca=...) as agent:
        agent.health()
    AgentClient("http://127.0.0.1:2188", credential="...").instances()

Errors: AgentError (the agent answered with an error: .status, .code, .message) and
AgentConnectionError (no answer; for a refused TLS handshake the message says why, as far
as this side can tell: our certificate expired, or was issued by another CA).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import time
from urllib.parse import quote, urlencode, urlsplit

from engine.client.errors import AgentConnectionError, AgentError
from engine.client.stream import StatusStream
from engine.wire.tls import (
    TLSError,
    certificate_from_der,
    check_certificate,
    client_context,
    describe_ssl_error,
    fingerprint_sha256,
    pinned_client_context,
)

__all__ = ["AgentClient", "AgentConnectionError", "AgentError", "StatusStream"]


class AgentClient:
    def __init__(
        self,
        url: str,
        *,
        cert=None,
        key=None,
        ca=None,
        credential: str | None = None,
        timeout: float = 10.0,
        pin_sha256: str | None = None,
    ):
        """pin_sha256: the agent's certificate must be exactly this one (SHA-256 of its DER
        form); instead of a CA, for a failover partner's agent (engine/member/agent_confirm.py)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
            raise ValueError(f"agent URL must look like https://host:port, got {url!r}")
        self.url = url
        self.host, self.port = parts.hostname, parts.port
        self.cert, self.ca = cert, ca
        self.credential = credential
        self.timeout = timeout
        self.pin = pin_sha256
        if parts.scheme != "https":
            self.context = None
        elif pin_sha256 is not None:
            self.context = pinned_client_context()
        else:
            self.context = client_context(cert, key, ca)
        self._conn: http.client.HTTPConnection | None = None
        self._conn_used = False

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn_used = False
            if self.context is not None:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, context=self.context, timeout=self.timeout
                )
                if self.pin is not None:
                    self._check_pin(self._conn)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def _check_pin(self, conn: http.client.HTTPSConnection) -> None:
        """Handshake now, and go on only with the pinned certificate: nothing is sent first."""
        try:
            conn.connect()
            der = conn.sock.getpeercert(binary_form=True)
        except (ssl.SSLError, OSError) as exc:
            self.close()
            raise AgentConnectionError(f"agent {self.url} unreachable: {exc}") from exc
        if not der or fingerprint_sha256(certificate_from_der(der)) != self.pin:
            self.close()
            raise AgentConnectionError(
                f"agent {self.url} presented a certificate other than the one the mirror "
                "knows for it (agent_cert_sha256)"
            )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _tls_refusal(self, exc: BaseException) -> str:
        """Why the agent dropped our TLS connection, as far as we can tell from here."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"the agent's certificate was not accepted: {describe_ssl_error(exc)}"
        if self.cert is None:
            return f"TLS connection failed: {describe_ssl_error(exc)}"
        try:
            check_certificate(self.cert, self.ca)
        except TLSError as problem:
            return f"the agent refused our client certificate: {problem}"
        return (
            "the agent closed the connection during TLS: it did not accept our client "
            f"certificate ({describe_ssl_error(exc)}; the agent log has its reason)"
        )

    def request(
        self, method: str, path: str, params: dict | None = None, body: bytes | None = None
    ) -> tuple[int, dict, bytes]:
        target = path + ("?" + urlencode(params) if params else "")
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.credential is not None:
            headers["Authorization"] = f"Bearer {self.credential}"
        for attempt in (1, 2):
            conn = self._connection()
            reused = self._conn_used
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self._conn_used = True
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError) as exc:
                self.close()
                if reused and attempt == 1 and isinstance(exc, http.client.RemoteDisconnected):
                    continue  # the agent closed a kept-alive connection: retry once, fresh
                if self.context is not None and isinstance(
                    exc, (ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected)
                ):
                    raise AgentConnectionError(self._tls_refusal(exc)) from exc
                raise AgentConnectionError(f"agent {self.url} unreachable: {exc}") from exc
        raise AssertionError("unreachable")

    def call(
        self, method: str, path: str, params: dict | None = None, body: dict | None = None
    ) -> dict:
        payload = None if body is None else json.dumps(body).encode()
        status, _, data = self.request(method, path, params, payload)
        try:
            body = json.loads(data) if data else {}
        except ValueError:
            raise AgentError(status, "bad_reply", f"not JSON: {data[:200]!r}") from None
        if status >= 400:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            code, message = err.get("code", "error"), err.get("message", str(body))
            raise AgentError(status, code, message, err.get("rule"))
        return body

    # -- endpoints ----------------------------------------------------------------------
    def health(self) -> dict:
        return self.call("GET", "/v1/health")

    def instances(self) -> list[dict]:
        return self.call("GET", "/v1/instances")["instances"]

    def instance(self, name: str) -> dict:
        return self.call("GET", f"/v1/instances/{quote(name, safe='')}")

    def force_down(self, name: str) -> dict:
        return self.call("POST", f"/v1/instances/{quote(name, safe='')}/force-down")

    # -- member and database operations (engine/agent/ops.py) ----------------------------
    # `mirror` (keyword) picks one of the mirrors of a reporting async in several
    def _op(self, instance: str, tail: str, body: dict | None = None, mirror=None) -> dict:
        return self.call("POST", self._path(instance, tail, mirror), body=body)

    @staticmethod
    def _path(instance: str, tail: str, mirror: str | None) -> str:
        path = f"/v1/instances/{quote(instance, safe='')}/{tail}"
        return path if mirror is None else f"{path}?mirror={quote(mirror, safe='')}"

    def _db_op(self, instance: str, db: str, op: str, body: dict | None = None) -> dict:
        return self._op(instance, f"databases/{quote(db, safe='')}/{op}", body)

    def databases(self, instance: str, *, mirror: str | None = None) -> dict:
        """{instance, member, status, dejournaling, databases: [{name, status, applied}],
        missing_mirrored_databases (backup and DR)} as the instance reports them."""
        return self.call("GET", self._path(instance, "databases", mirror))

    def create_database(
        self, instance: str, db: str, mirrored: bool = True, *, mirror: str | None = None
    ) -> dict:
        body = {"name": db, "mode": "create", "mirrored": mirrored}
        return self._op(instance, "databases", body, mirror)

    def add_database(self, instance: str, db: str, *, mirror: str | None = None) -> dict:
        return self._op(instance, "databases", {"name": db, "mode": "add"}, mirror)

    def download(self, instance: str, db: str) -> dict:
        """Start copying the database from another member; it is caught up by itself."""
        return self._db_op(instance, db, "download")

    def activate(self, instance: str, db: str) -> dict:
        return self._db_op(instance, db, "activate")

    def catchup(
        self,
        instance: str,
        databases: str | list[str],
        wait: bool = False,
        wait_timeout: float = 300.0,
    ) -> dict:
        """One database, or several at once (in parallel where the mirror allows); with
        wait, the answer comes when they are caught up (up to wait_timeout seconds)."""
        with self._longer_timeout(wait_timeout if wait else self.timeout):
            if isinstance(databases, str):
                return self._db_op(instance, databases, "catchup", {"wait": wait})
            return self._op(instance, "databases/catchup", {"databases": databases, "wait": wait})

    @contextlib.contextmanager
    def _longer_timeout(self, seconds: float):
        """A fresh connection whose reads may wait `seconds` (http.client sets the socket
        timeout when it connects), then back to the usual timeout."""
        saved = self.timeout
        if seconds <= saved:
            yield
            return
        self.close()
        self.timeout = seconds
        try:
            yield
        finally:
            self.close()
            self.timeout = saved

    def mount(self, instance: str, db: str, catchup: bool = False) -> dict:
        return self._db_op(instance, db, "mount", {"catchup": catchup})

    def dismount(self, instance: str, db: str) -> dict:
        return self._db_op(instance, db, "dismount")

    def remove_database(self, instance: str, db: str) -> dict:
        return self._db_op(instance, db, "remove")

    def clear_failover_db(
        self,
        instance: str,
        databases: str | list[str] | None = None,
        *,
        all_databases: bool = False,
        mirror: str | None = None,
    ) -> dict:
        """Clear the FailoverDB flag of one database (its result), or of several or all of
        the instance's mirrored databases ({"databases": [one result each]})."""
        if (databases is None) == (not all_databases):
            raise ValueError("name the databases, or give all_databases=True")
        if isinstance(databases, str):
            tail = f"databases/{quote(databases, safe='')}/clear-failover-db"
            return self._op(instance, tail, mirror=mirror)
        body = {"all": True} if all_databases else {"databases": databases}
        return self._op(instance, "databases/clear-failover-db", body, mirror)

    def pause_database(self, instance: str, db: str) -> dict:
        return self._db_op(instance, db, "pause")

    def resume_database(self, instance: str, db: str) -> dict:
        return self._db_op(instance, db, "resume")

    def stop_mirroring(self, instance: str, *, mirror: str | None = None) -> dict:
        return self._op(instance, "mirroring/stop", mirror=mirror)

    def start_mirroring(self, instance: str, *, mirror: str | None = None) -> dict:
        return self._op(instance, "mirroring/start", mirror=mirror)

    # -- failover (engine/agent/failover.py) ---------------------------------------------
    def stop_instance(self, name: str) -> dict:
        """Graceful shutdown (a primary hands over to its Active backup): {stopped, pid}."""
        return self.call("POST", f"/v1/instances/{quote(name, safe='')}/stop")

    def set_no_failover(self, instance: str) -> dict:
        return self._op(instance, "failover/set-no-failover")

    def clear_no_failover(self, instance: str) -> dict:
        return self._op(instance, "failover/clear-no-failover")

    def force_primary(self, instance: str, *, confirm: bool = False) -> dict:
        """Without confirm: what is at stake ({was_active_backup, journal_end, last_primary,
        term, warning}); with it, the member becomes primary ({confirmed: true, ...})."""
        return self._op(instance, "failover/force-primary", {"confirm": confirm})

    def demote_to_dr(self, instance: str) -> dict:
        """On the backup: ask its primary to make it a DR async ({member, asked_of, type})."""
        return self._op(instance, "failover/demote-to-dr")

    def rebuild_member(self, instance: str, *, confirm: bool = False) -> dict:
        """Without confirm: what is at stake ({journal_end, databases, refused_because,
        warning}); with it, the member restarts and takes its data again from the mirror."""
        return self._op(instance, "rebuild", {"confirm": confirm})

    def promote_to_primary(
        self, instance: str, *, partner: str | None = None, confirm: bool = False
    ) -> dict:
        """On a DR async while no primary runs: without confirm, what is at stake
        ({journal_end, last_primary, partner, warning}); with it, the member restarts as
        primary ({confirmed: true, term, demoted, journal_fetched})."""
        body = {"confirm": confirm} if partner is None else {"confirm": confirm, "partner": partner}
        return self._op(instance, "failover/promote-to-primary", body)

    def clear_validated_member(self, instance: str) -> dict:
        """ValidatedMember=0 on a stopped instance ({validated: false})."""
        return self._op(instance, "failover/clear-validated-member")

    def promote_member(self, instance: str, member: str, *, mirror: str | None = None) -> dict:
        """On the primary: DR async `member` becomes the backup; the backup there was becomes
        DR ({member, type, demoted})."""
        path = f"/members/{quote(member, safe='')}/promote"
        return self._mirror("POST", instance, path, mirror=mirror)

    def demote_member(self, instance: str, member: str, *, mirror: str | None = None) -> dict:
        """On the primary: the backup `member` becomes a DR async ({member, type})."""
        path = f"/members/{quote(member, safe='')}/demote"
        return self._mirror("POST", instance, path, mirror=mirror)

    def stop_dejournaling(self, instance: str) -> dict:
        return self._op(instance, "dejournaling/stop")

    def start_dejournaling(self, instance: str) -> dict:
        return self._op(instance, "dejournaling/start")

    # -- mirror membership and TLS files (engine/agent/mirror.py) -----------------------
    # `mirror` (keyword) says which of an instance's mirrors an action is for; needed only
    # for a reporting async in several mirrors.
    def _mirror(
        self,
        method: str,
        instance: str,
        tail: str = "",
        body: dict | None = None,
        mirror: str | None = None,
    ) -> dict:
        path = f"/v1/instances/{quote(instance, safe='')}/mirror{tail}"
        return self.call(method, path, {"mirror": mirror} if mirror else None, body)

    def mirror_info(self, instance: str, *, mirror: str | None = None) -> dict:
        """The mirror as the instance knows it: name, version, settings, members (name,
        type, addresses, dn, authorized), primary, its own member name, role and
        dn_updates.  A non-member: AgentError 409."""
        return self._mirror("GET", instance, mirror=mirror)

    def create_mirror(
        self,
        instance: str,
        mirror: str,
        private: str,
        member: str | None = None,
        settings: dict | None = None,
    ) -> dict:
        """The non-member becomes the primary of a new mirror; it restarts (wait_member)."""
        body = {"mirror": mirror, "private": private}
        if member is not None:
            body["member"] = member
        if settings:
            body["settings"] = settings
        return self._mirror("POST", instance, body=body)

    def join_mirror(
        self,
        instance: str,
        mirror: str,
        address: str,
        type: str,  # the member type, as the API names it
        member: str | None = None,
        private: str | None = None,
        superserver: str | None = None,
        secret: str | None = None,
    ) -> dict:
        """Join through the primary or backup at `address` (its superserver) as failover,
        dr, ro_reporting or rw_reporting; on a TLS mirror the member stays pending until
        the primary authorizes it.  A mirror without TLS needs its `secret` (mirror_secret
        of the primary).  The instance restarts (wait_member)."""
        body = {"mirror": mirror, "address": address, "type": type}
        optional = {
            "member": member,
            "private": private,
            "superserver": superserver,
            "secret": secret,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._mirror("POST", instance, "/join", body)

    def mirror_secret(self, instance: str, *, mirror: str | None = None) -> str:
        """The mirror secret held by member `instance` (the same on every member), to hand to
        join_mirror."""
        return self._mirror("GET", instance, "/secret", mirror=mirror)["secret"]

    def set_arbiter(self, instance: str, arbiter: str | None, *, mirror: str | None = None):
        """The mirror's arbiter ("host:port"; None: none), set on the primary."""
        return self._mirror("PUT", instance, "/arbiter", {"arbiter": arbiter or ""}, mirror)

    def edit_mirror(self, instance: str, *, mirror: str | None = None, **settings) -> dict:
        """Mirror settings on the primary (qos_timeout_ms, failover_compression, ...).
        tls=True is refused while a reachable member fails verify_tls, unless also
        skip_verify=True; the answer then lists the members verified."""
        return self._mirror("PATCH", instance, body=settings, mirror=mirror)

    def verify_tls(self, instance: str, *, mirror: str | None = None) -> dict:
        """Verify SSL: {mirror, ca, ok, members: [{member, reachable, ok, dn, not_after,
        problem}], failing, unreachable} as checked from the instance (the primary)."""
        return self._mirror("POST", instance, "/verify-tls", mirror=mirror)

    def leave_mirror(
        self, instance: str, remove_db_attribute: bool = False, *, mirror: str | None = None
    ) -> dict:
        body = {"remove_db_attribute": remove_db_attribute}
        return self._mirror("POST", instance, "/leave", body, mirror)

    def remove_mirror_config(
        self,
        instance: str,
        remove_db_attribute: bool = False,
        remove_tls: bool = False,
        *,
        mirror: str | None = None,
    ) -> dict:
        """The instance's whole mirror configuration (a reporting async: every mirror,
        unless `mirror`); the primary, as the last member, in two calls (`step` 1 clears
        the Join-Mirror flag and restarts, `step` 2 removes)."""
        body = {"remove_db_attribute": remove_db_attribute, "remove_tls": remove_tls}
        return self._mirror("POST", instance, "/remove-config", body, mirror)

    def set_superserver_port(self, instance: str, port: int) -> dict:
        """The instance's own superserver port; it restarts there (guide §5.2)."""
        path = f"/v1/instances/{quote(instance, safe='')}/superserver"
        return self.call("PUT", path, body={"port": port})

    @staticmethod
    def _member_path(member: str) -> str:
        return f"/members/{quote(member, safe='')}"

    def authorize_member(self, instance: str, member: str, *, mirror: str | None = None) -> dict:
        tail = self._member_path(member) + "/authorize"
        return self._mirror("POST", instance, tail, mirror=mirror)

    def reject_member(self, instance: str, member: str, *, mirror: str | None = None) -> dict:
        tail = self._member_path(member) + "/reject"
        return self._mirror("POST", instance, tail, mirror=mirror)

    def update_member_address(
        self,
        instance: str,
        member: str,
        superserver: str | None = None,
        private: str | None = None,
        *,
        mirror: str | None = None,
    ) -> dict:
        body = {k: v for k, v in (("superserver", superserver), ("private", private)) if v}
        return self._mirror("PATCH", instance, self._member_path(member), body, mirror)

    def remove_member(self, instance: str, member: str, *, mirror: str | None = None) -> dict:
        return self._mirror("DELETE", instance, self._member_path(member), mirror=mirror)

    def authorize_dn_update(self, instance: str, member: str, *, mirror: str | None = None) -> dict:
        tail = f"/dn-updates/{quote(member, safe='')}/authorize"
        return self._mirror("POST", instance, tail, mirror=mirror)

    def reject_dn_update(self, instance: str, member: str, *, mirror: str | None = None) -> dict:
        tail = f"/dn-updates/{quote(member, safe='')}/reject"
        return self._mirror("POST", instance, tail, mirror=mirror)

    def set_tls(self, instance: str, cert, key, ca) -> dict:
        """The instance's TLS files (for all its mirrors): absolute paths on the agent's
        host."""
        body = {"cert": str(cert), "key": str(key), "ca": str(ca)}
        return self.call("PUT", f"/v1/instances/{quote(instance, safe='')}/tls", body=body)

    def reload_tls(self, instance: str) -> dict:
        return self._op(instance, "tls/reload")

    # -- application credentials (engine/agent/app_credentials.py) ----------------------
    def app_credentials(self, instance: str) -> dict:
        """{instance, credentials: [{name, created}], auth, mode}: names, never secrets."""
        return self.call("GET", f"/v1/instances/{quote(instance, safe='')}/app-credentials")

    def create_app_credential(self, instance: str, name: str) -> dict:
        """{instance, name, secret}: the instance keeps only a hash; the secret is in this
        answer and nowhere else."""
        path = f"/v1/instances/{quote(instance, safe='')}/app-credentials"
        return self.call("POST", path, body={"name": name})

    def revoke_app_credential(self, instance: str, name: str) -> dict:
        """{instance, name, revoked, closed_connections}: the credential's open connections
        are closed."""
        path = f"/v1/instances/{quote(instance, safe='')}/app-credentials/{quote(name, safe='')}"
        return self.call("DELETE", path)

    def wait_member(
        self,
        instance: str,
        timeout: float = 30.0,
        *,
        mirror: str | None = None,
        interval: float = 0.1,
    ) -> dict:
        """Poll until the instance answers as a member of a mirror (it restarts after
        create and join; meanwhile it is down or still the non-member), or with `mirror`
        as a member of that one (an instance joining a further mirror already is a
        member).  Returns its row (GET /v1/instances/{name}); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if mirror is not None:
                    info = self.mirror_info(instance, mirror=mirror)
                    last = f"member of mirror {info['name']}"
                    member = info["name"] == mirror.upper()
                else:
                    last = self.databases(instance).get("status")
                    member = last not in (None, "Not Initialized")
            except AgentError as exc:
                if exc.status not in (409, 503):
                    raise
                member, last = False, exc.message
            if member:
                return self.instance(instance)
            if time.monotonic() >= deadline:
                what = f"mirror {mirror}" if mirror else "a mirror"
                raise TimeoutError(
                    f"instance {instance} is not a member of {what} after {timeout:g} s ({last})"
                )
            time.sleep(interval)

    def journal_files(self, mirror: str, instance: str | None = None) -> list[dict]:
        params = {"instance": instance} if instance else None
        return self.call("GET", f"/v1/journal/{quote(mirror, safe='')}/files", params)["files"]

    def journal_chunk(
        self, mirror: str, name: str, offset: int = 0, length: int | None = None, **params
    ) -> tuple[bytes, dict]:
        query = {"offset": offset, **{k: v for k, v in params.items() if v is not None}}
        if length is not None:
            query["length"] = length
        path = f"/v1/journal/{quote(mirror, safe='')}/files/{quote(name, safe='')}"
        status, headers, data = self.request("GET", path, query)
        if status >= 400:
            self._raise(status, data)
        return data, headers

    def fetch_journal_file(self, mirror: str, name: str, instance: str | None = None) -> bytes:
        """The whole file as it is now, in chunks (raw bytes)."""
        out = bytearray()
        while True:
            data, _ = self.journal_chunk(mirror, name, len(out), instance=instance)
            if not data:
                return bytes(out)
            out += data

    def open_stream(self, path: str, read_timeout: float = 30.0) -> http.client.HTTPResponse:
        """A long-lived GET on a connection of its own (raises AgentError on a refusal).
        Once it is open, a read waits up to read_timeout (longer than the agent's
        keep-alive interval, stream_heartbeat_ms) before the stream counts as dead."""
        if self.context is not None:
            conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=self.timeout
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Accept": "text/event-stream"}
        if self.credential is not None:
            headers["Authorization"] = f"Bearer {self.credential}"
        try:
            conn.request("GET", path, headers=headers)
            # the response takes the socket over (Connection: close), so keep hold of it
            sock = conn.sock
            resp = conn.getresponse()
        except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError) as exc:
            conn.close()
            if self.context is not None and isinstance(exc, ssl.SSLError):
                raise AgentConnectionError(self._tls_refusal(exc)) from exc
            raise AgentConnectionError(f"agent {self.url} unreachable: {exc}") from exc
        if resp.status >= 400:
            data = resp.read()
            conn.close()
            self._raise(resp.status, data)
        sock.settimeout(read_timeout)
        return resp

    def status_stream(self, **kw) -> StatusStream:
        """A follower of this agent's status stream (engine/client/stream.py)."""
        return StatusStream(self, **kw)

    @staticmethod
    def _raise(status: int, data: bytes) -> None:
        try:
            err = json.loads(data)["error"]
            raise AgentError(status, err["code"], err["message"], err.get("rule"))
        except (ValueError, KeyError, TypeError):
            raise AgentError(status, "error", data[:200].decode(errors="replace")) from None

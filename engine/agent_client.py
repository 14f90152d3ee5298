"""A small blocking client of the agent API (tests, the cluster launcher, the portal's jobs).

    with AgentClient("https://127.0.0.1:2188", cert=..., key=..., ca=...) as agent:
        agent.health()
    AgentClient("http://127.0.0.1:2188", credential="...").instances()

Errors: AgentError (the agent answered with an error: .status, .code, .message) and
AgentConnectionError (no answer; for a refused TLS handshake the message says why, as far
as this side can tell: our certificate expired, or was issued by another CA).
"""

from __future__ import annotations

import http.client
import json
import ssl
from urllib.parse import quote, urlencode, urlsplit

from engine.tls import TLSError, check_certificate, client_context, describe_ssl_error


class AgentError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"agent answered {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class AgentConnectionError(Exception):
    pass


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
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
            raise ValueError(f"agent URL must look like https://host:port, got {url!r}")
        self.url = url
        self.host, self.port = parts.hostname, parts.port
        self.cert, self.ca = cert, ca
        self.credential = credential
        self.timeout = timeout
        self.context = client_context(cert, key, ca) if parts.scheme == "https" else None
        self._conn: http.client.HTTPConnection | None = None
        self._conn_used = False

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn_used = False
            if self.context is not None:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, context=self.context, timeout=self.timeout
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

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

    def call(self, method: str, path: str, params: dict | None = None) -> dict:
        status, _, data = self.request(method, path, params)
        try:
            body = json.loads(data) if data else {}
        except ValueError:
            raise AgentError(status, "bad_reply", f"not JSON: {data[:200]!r}") from None
        if status >= 400:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            raise AgentError(status, err.get("code", "error"), err.get("message", str(body)))
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

    @staticmethod
    def _raise(status: int, data: bytes) -> None:
        try:
            err = json.loads(data)["error"]
            raise AgentError(status, err["code"], err["message"])
        except (ValueError, KeyError, TypeError):
            raise AgentError(status, "error", data[:200].decode(errors="replace")) from None

"""TLS for the engine: throwaway certificate authorities, member certificates, SSL contexts.

Certificates for demos and tests are made at run time (never committed):

    ca = make_ca(directory)                               # ca.pem + ca-key.pem
    paths = make_cert(ca, directory, "agent-a")           # agent-a.pem + agent-a-key.pem
    server = server_context(paths.cert, paths.key, ca.cert_path)   # mutual TLS server side
    client = client_context(paths.cert, paths.key, ca.cert_path)

A member's identity is its certificate's X.509 subject DN in RFC 4514 form
(`peer_dn(ssl_object)`, `normalize_dn(text)`).  Problems are reported as TLSError with a
message that names the file and the reason (missing, not PEM, key not matching, expired,
issued by another CA).

A TLS handshake refused by a listener made with server_context (the members' mirror private
address, the snapshot port) is logged: asyncio drops it silently otherwise.  See
HandshakeFailureLog: one WARNING line per refusal with the peer and the reason, at most
HANDSHAKE_LOG_LINES lines per reason in HANDSHAKE_LOG_WINDOW seconds, then one summary line
with the count of those not logged one by one.  A listener with a log of its own (the
superserver's, engine/member/instance.py) passes `refusals=` to server_context instead.

An instance whose superserver speaks TLS says how to reach it in <data dir>/superserver_tls.json
(publish_superserver_tls); the tools that read its admin token from there too — the host's
agent, `python -m engine admin` and `status`, `cluster build` — connect with
superserver_client_context(data_dir): the instance's own certificate, verified against its CA.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import ipaddress
import json
import logging
import os
import re
import ssl
import sys
import threading
import time
from asyncio import sslproto
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DN_TYPE = re.compile(r"(^|(?<!\\)[,+])\s*([A-Za-z][A-Za-z0-9-]*)\s*=")
DEFAULT_CA_DAYS = 30
DEFAULT_CERT_DAYS = 7
UTC = dt.UTC
HANDSHAKE_LOG_LINES = 5  # lines per reason and window; the rest are counted
HANDSHAKE_LOG_WINDOW = 10.0  # seconds
HANDSHAKE_LOG_REASONS = 32  # reasons tracked apart; more are counted together as "other"
log = logging.getLogger("engine.wire.tls")


class TLSError(Exception):
    """A certificate, key or CA cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class CertPaths:
    cert: Path
    key: Path


@dataclass(frozen=True)
class CA:
    cert_path: Path
    key_path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def dn(self) -> str:
        return self.cert.subject.rfc4514_string()


# -- making certificates -------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def write_private_file(path: str | Path, data: bytes, exclusive: bool = False) -> None:
    """Write a secret (key, credential) created 0600 from the start, so it is never
    readable by others, not even briefly; exclusive=True refuses to overwrite."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_file(path, data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(cn: str, org: str | None) -> x509.Name:
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def make_ca(
    directory: str | Path,
    name: str = "Mirror Portal throwaway CA",
    days: int = DEFAULT_CA_DAYS,
    prefix: str = "ca",
) -> CA:
    """A new self-signed CA in directory (<prefix>.pem and <prefix>-key.pem)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name, "Mirror Portal")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{prefix}.pem", directory / f"{prefix}-key.pem"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return CA(cert_path, key_path, cert, key)


def load_ca(directory: str | Path, prefix: str = "ca") -> CA:
    """A CA made earlier by make_ca (needs its key, to sign more certificates)."""
    directory = Path(directory)
    cert_path, key_path = directory / f"{prefix}.pem", directory / f"{prefix}-key.pem"
    cert = load_certificate(cert_path)
    data = _read(key_path, "CA private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise TLSError(f"{key_path}: not a usable PEM private key ({exc})") from None
    return CA(cert_path, key_path, cert, key)


CERT_USAGES = {
    "member": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    "server": [ExtendedKeyUsageOID.SERVER_AUTH],
    "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
}


def make_cert(
    ca: CA,
    directory: str | Path,
    cn: str,
    *,
    org: str | None = "Mirror Portal",
    days: float = DEFAULT_CERT_DAYS,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    name: str | None = None,
    usage: str = "member",
) -> CertPaths:
    """A certificate signed by ca, with the extended key usages of `usage` (CERT_USAGES):
    "member" serves and connects (serverAuth and clientAuth, what a member certificate needs,
    engine/rules.py check_member_certificate), "server" (an agent) only serves and "client" (the
    portal, an operator's tool) only connects, so neither of those can ask to be a member
    (docs/hardening.md, Membership).

    Files: <name or cn>.pem and <name or cn>-key.pem.  not_before/not_after override the
    validity window (an already expired certificate for tests: not_after in the past).
    """
    if usage not in CERT_USAGES:
        raise TLSError(f"certificate usage {usage!r}: expected one of {', '.join(CERT_USAGES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = name or cn
    if not stem or "/" in stem or stem.startswith("."):
        raise TLSError(f"certificate file name {stem!r} is not a plain file name")
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - dt.timedelta(minutes=5)
    end = not_after or _now() + dt.timedelta(days=days)
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(CERT_USAGES[usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    paths = CertPaths(directory / f"{stem}.pem", directory / f"{stem}-key.pem")
    _write_key(paths.key, key)
    _write_cert(paths.cert, cert)
    return paths


# -- reading certificates ------------------------------------------------------------


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise TLSError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise TLSError(f"{what} path is a directory, not a file: {path}") from None
    except OSError as exc:
        raise TLSError(f"{what} file {path} cannot be read: {exc.strerror}") from None


def load_certificate(path: str | Path) -> x509.Certificate:
    data = _read(path, "certificate")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TLSError(f"{path}: not a PEM certificate") from None


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """The certificate's SHA-256 over its DER form, 64 lower-case hex digits."""
    return cert.fingerprint(hashes.SHA256()).hex()


def pinned_client_context() -> ssl.SSLContext:
    """A TLS 1.2+ client context that checks nothing by itself: the caller compares the
    server's certificate with the one it pinned before sending a byte (AgentClient)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def certificate_from_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def _expiry(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc


def cert_info(cert: x509.Certificate) -> dict:
    """What the portal shows about a certificate: DN, issuer, validity, days left."""
    expires = _expiry(cert)
    left = expires - _now()
    return {
        "subject_dn": cert.subject.rfc4514_string(),
        "issuer_dn": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": expires.isoformat(),
        "expired": left.total_seconds() <= 0,
        "days_left": round(left.total_seconds() / 86400, 2),
    }


def peer_certificate(ssl_object) -> x509.Certificate | None:
    """The verified certificate the peer presented on this TLS connection, if any."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return certificate_from_der(der) if der else None


def peer_dn(ssl_object) -> str | None:
    """The peer certificate's subject DN in RFC 4514 form (None without a certificate)."""
    cert = peer_certificate(ssl_object)
    return None if cert is None else cert.subject.rfc4514_string()


def normalize_dn(text: str) -> str:
    """One spelling per DN, so an allow list entry matches the certificate's RFC 4514 string."""
    if not isinstance(text, str) or not text.strip():
        raise TLSError(f"{text!r} is not an X.509 distinguished name")
    # attribute types are case-insensitive (RFC 4514 §2.3); cryptography wants upper case
    spelled = _DN_TYPE.sub(lambda m: m.group(1) + m.group(2).upper() + "=", text.strip())
    try:
        name = x509.Name.from_rfc4514_string(spelled)
    except ValueError as exc:
        why = f": {exc}" if str(exc) else ""
        raise TLSError(f"{text!r} is not an RFC 4514 distinguished name{why}") from None
    if not list(name):
        raise TLSError(f"{text!r} is not an X.509 distinguished name")
    return name.rfc4514_string()


def check_certificate(cert_path: str | Path, ca_path: str | Path | None = None) -> dict:
    """cert_info of a certificate file after checking it is in date and, given ca_path,
    directly issued by that CA; raises TLSError naming the problem otherwise."""
    cert = load_certificate(cert_path)
    info = cert_info(cert)
    now = _now()
    if cert.not_valid_before_utc > now:
        raise TLSError(
            f"{cert_path}: certificate {info['subject_dn']} "
            f"is not valid before {info['not_before']}"
        )
    if info["expired"]:
        raise TLSError(
            f"{cert_path}: certificate {info['subject_dn']} expired on {info['not_after']}"
        )
    if ca_path is not None:
        ca = load_certificate(ca_path)
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise TLSError(
                f"{cert_path}: certificate {info['subject_dn']} (issuer {info['issuer_dn']}) "
                f"was not issued by the CA in {ca_path} ({ca.subject.rfc4514_string()})"
                + (f": {exc}" if str(exc) else "")
            ) from None
    return info


# -- SSL contexts ----------------------------------------------------------------------


def _load_chain(ctx: ssl.SSLContext, cert: str | Path, key: str | Path) -> None:
    _read(cert, "certificate")
    _read(key, "private key")
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(exc).upper():
            reason = "the private key does not belong to the certificate"
        raise TLSError(f"cannot use certificate {cert} with key {key}: {reason}") from None


def _load_ca(ctx: ssl.SSLContext, ca: str | Path) -> None:
    _read(ca, "CA certificate")
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except ssl.SSLError as exc:
        raise TLSError(f"{ca}: not a PEM CA certificate ({exc.reason or exc})") from None


# -- refused handshakes ----------------------------------------------------------------


class HandshakeFailureLog:
    """Rate-limited WARNING lines for refused TLS handshakes, so a flood cannot fill a disk.

    Per reason, the first `lines` refusals of a `window` (seconds, from the first one) are
    logged one by one; the others are counted, and the count is logged in one line when the
    window ends (or, without an event loop to call back, at the next refusal after it).
    """

    def __init__(
        self,
        logger: logging.Logger = log,
        lines: int = HANDSHAKE_LOG_LINES,
        window: float = HANDSHAKE_LOG_WINDOW,
        reasons: int = HANDSHAKE_LOG_REASONS,
    ):
        self.logger = logger
        self.lines = lines
        self.window = window
        self.reasons = reasons
        self.total = 0  # refusals seen since start, logged or not
        self._windows: dict[str, list] = {}  # reason -> [start, logged, suppressed]
        self._lock = threading.Lock()

    def refused(self, where, reason: str) -> None:
        """One refusal; `where()` gives (peer, local) addresses, asked only for a line that
        is written (finding them may cost something, see _LoggedSSLObject)."""
        now = time.monotonic()
        with self._lock:
            self.total += 1
            key = reason
            if key not in self._windows and len(self._windows) >= self.reasons:
                key = "other reasons"
            state = self._windows.get(key)
            if state is not None and now >= state[0] + self.window:
                self._summarize(key)
                state = None
            if state is None:
                state = self._windows[key] = [now, 0, 0]
            if state[1] < self.lines:
                state[1] += 1
                peer, local = where()
                self.logger.warning("TLS handshake from %s to %s refused: %s", peer, local, reason)
                return
            state[2] += 1
            if state[2] == 1:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    return  # summarized at the next refusal after the window
                loop.call_later(state[0] + self.window - now, self._flush, key, state)

    def _flush(self, key: str, state: list) -> None:
        with self._lock:
            if self._windows.get(key) is state:
                self._summarize(key)

    def _summarize(self, key: str) -> None:
        start, _, suppressed = self._windows.pop(key)
        if suppressed:
            self.logger.warning(
                "%d more TLS handshakes refused in the last %.0f s, not logged one by one: %s",
                suppressed,
                max(self.window, time.monotonic() - start),
                key,
            )


handshake_failures = HandshakeFailureLog()

# OpenSSL's reason codes for what a TLS server meets most, in words
_HANDSHAKE_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no client certificate: the peer did not return a "
    "certificate",
    "CERTIFICATE_REQUIRED": "no client certificate: the peer did not return a certificate",
    "WRONG_VERSION_NUMBER": "not a TLS client hello (plain TCP or another protocol)",
    "HTTP_REQUEST": "not a TLS client hello (plain HTTP)",
    "UNKNOWN_PROTOCOL": "not a TLS client hello",
    "NO_SHARED_CIPHER": "no cipher in common with the peer",
    "UNSUPPORTED_PROTOCOL": "the peer's TLS version is not accepted (TLS 1.2 at least)",
}


def handshake_refusal(exc: BaseException) -> str:
    """Why this side refused a client's handshake, as a sentence for the log."""
    verify = getattr(exc, "verify_message", None)
    if verify:
        reason = f"certificate verify failed: {verify}"
        if "local issuer" in verify or "self-signed" in verify or "self signed" in verify:
            reason += " (the client certificate was not issued by the CA this side trusts)"
        return reason
    code = str(getattr(exc, "reason", None) or "")
    if code.upper() in _HANDSHAKE_REASONS:
        return f"{_HANDSHAKE_REASONS[code.upper()]} ({code})"
    return describe_ssl_error(exc) or type(exc).__name__


def _asyncio_transport():
    """The transport under asyncio's SSLProtocol running the failed handshake (a caller a few
    frames up), and whether that protocol is a start_tls one (its caller hears of it)."""
    frame = sys._getframe(3)
    for _ in range(4):
        if frame is None:
            break
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, sslproto.SSLProtocol):
            return candidate._transport, not getattr(candidate, "_call_connection_made", True)
        frame = frame.f_back
    return None, False


class _LookupBudget:
    """At most `n` searches of the heap per HANDSHAKE_LOG_WINDOW, so the cost of naming the
    peer is bounded whatever a flood does."""

    def __init__(self, n: int = 2 * HANDSHAKE_LOG_LINES):
        self.n = n
        self._spent: list[float] = []

    def take(self) -> bool:
        now = time.monotonic()
        self._spent = [t for t in self._spent if now - t < HANDSHAKE_LOG_WINDOW]
        if len(self._spent) >= self.n:
            return False
        self._spent.append(now)
        return True


_lookups = _LookupBudget()


def _compiled_transport(sslobj):
    """uvloop's SSLProtocol is compiled: no frame and no attribute to read.  Its transport is
    found as what refers to the protocol that refers to this SSLObject."""
    if not _lookups.take():
        return None
    for proto in gc.get_referrers(sslobj):
        if type(proto).__name__ != "SSLProtocol":
            continue
        for holder in gc.get_referrers(proto):
            get_protocol = getattr(holder, "get_protocol", None)
            if callable(get_protocol) and hasattr(holder, "get_extra_info"):
                try:
                    if get_protocol() is proto:
                        return holder
                except Exception:  # noqa: S112 - a closing transport: look on
                    continue
    return None


def _address(transport, name: str) -> str:
    try:
        addr = transport.get_extra_info(name) if transport is not None else None
    except Exception:  # a transport closing under us
        addr = None
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return "?" if addr is None else str(addr)


class _LoggedSSLObject(ssl.SSLObject):
    """The SSLObject of the server contexts: a handshake it refuses is logged.

    Only where the event loop would swallow the error: a listener made with
    create_server(ssl=).  A handshake started with asyncio's loop.start_tls raises to its
    caller, which reports it (the agent's TLSAcceptor, engine/agent/auth.py), so it is not
    logged here twice.  The peer's address comes from the transport under the handshake:
    asyncio's SSLProtocol is a caller of this method; uvloop's is compiled code, found
    through the garbage collector's referrers (a few times per window at most).
    """

    refusals = None  # where refusals go (HandshakeFailureLog's interface); None: the module's

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLSyscallError):
            raise
        except ssl.SSLError as exc:
            _log_refusal(self, exc)
            raise


def _log_refusal(sslobj: ssl.SSLObject, exc: ssl.SSLError) -> None:
    try:
        transport, started_tls = _asyncio_transport()
        if started_tls:
            return  # start_tls: the caller hears of it

        def where():
            t = transport if transport is not None else _compiled_transport(sslobj)
            return _address(t, "peername"), _address(t, "sockname")

        (sslobj.refusals or handshake_failures).refused(where, handshake_refusal(exc))
    except Exception:  # logging must never change what the handshake does
        log.debug("cannot log a refused TLS handshake", exc_info=True)


def server_context(
    cert: str | Path,
    key: str | Path,
    ca: str | Path | None = None,
    require_client_cert=True,
    refusals=None,
) -> ssl.SSLContext:
    """A TLS 1.2+ server context; with ca, clients must present a certificate from that CA.

    require_client_cert=False still verifies a certificate when one is presented but lets
    a client without one finish the handshake (the application answers it with a clear
    "certificate required" instead of a bare TLS alert).  Handshakes it refuses on a
    listening socket are logged (HandshakeFailureLog), or handed to `refusals`, an object
    with HandshakeFailureLog's refused(where, reason).
    """
    check_certificate(cert)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.sslobject_class = _LoggedSSLObject
    if refusals is not None:  # per context: the class is what the context instantiates
        ctx.sslobject_class = type("_LoggedSSLObject", (_LoggedSSLObject,), {"refusals": refusals})
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert, key)
    if ca is not None:
        _load_ca(ctx, ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_context(
    cert: str | Path | None = None, key: str | Path | None = None, ca: str | Path | None = None
) -> ssl.SSLContext:
    """A TLS 1.2+ client context that verifies the server against ca (hostname checked)
    and presents cert/key when given (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        _load_ca(ctx, ca)
    else:
        ctx.load_default_certs()
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise TLSError("a client certificate needs both cert and key")
        _load_chain(ctx, cert, key)
    return ctx


def describe_ssl_error(exc: BaseException) -> str:
    """A sentence for an SSL handshake failure (either side), e.g. for logs and errors."""
    text = str(getattr(exc, "reason", None) or exc)
    verify = getattr(exc, "verify_message", None)
    upper = text.upper()
    if verify:
        return f"certificate verify failed: {verify}"
    if "CERTIFICATE_EXPIRED" in upper:
        return "the peer refused our certificate: it has expired"
    if "UNKNOWN_CA" in upper:
        return "the peer refused our certificate: it was issued by a CA the peer does not trust"
    if "CERTIFICATE_REQUIRED" in upper:
        return "the peer requires a client certificate and none was presented"
    if "BAD_CERTIFICATE" in upper:
        return "the peer refused our certificate"
    return text


def speaks_plain(exc: BaseException) -> bool:
    """Did a TLS client handshake fail because the server answered in plain protocol bytes
    (a superserver without TLS answers a client hello with a plain error frame)?"""
    return isinstance(exc, ssl.SSLError) and exc.reason == "WRONG_VERSION_NUMBER"


async def presented_certificate(host: str, port: int, timeout: float) -> x509.Certificate | None:
    """The certificate a TLS server presents, unverified (None when no TLS handshake gets that
    far): to say what is wrong with a peer whose verified handshake failed.  Nothing is sent;
    a server that requires a client certificate presents its own before it refuses."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return certificate_from_der(der) if der else None


# -- the superserver's TLS, as an instance publishes it --------------------------------

SUPERSERVER_TLS_FILE = "superserver_tls.json"
_published: dict[Path, tuple[tuple, ssl.SSLContext | None]] = {}


def publish_superserver_tls(
    data_dir: str | Path, files: tuple[Path, Path, Path] | None, client_cert: str = "required"
) -> None:
    """Tell the tools of this host how the superserver listens now: TLS with these
    (cert, key, ca) files, or plain (None).  Rewritten at every listen, so a file left by an
    earlier start never outlives the listener it described."""
    data = {"tls": files is not None}
    if files is not None:
        cert, key, ca = (str(Path(f).resolve()) for f in files)
        data.update(cert=cert, key=key, ca=ca, client_cert=client_cert)
    path = Path(data_dir) / SUPERSERVER_TLS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def superserver_client_context(data_dir: str | Path) -> ssl.SSLContext | None:
    """How a tool of the host reaches the superserver of the instance in data_dir: None when
    it listens in plain (or has not said), else a client context presenting the instance's own
    certificate and verifying the instance against its CA.  Whoever may read the instance's
    admin token may read its key, and that certificate is always one the instance accepts.
    Raises TLSError when the files it names cannot be used."""
    path = Path(data_dir) / SUPERSERVER_TLS_FILE
    try:
        st = path.stat()
        stamp: tuple = (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        return None
    cached = _published.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TLSError(f"{path}: unreadable ({exc})") from None
    ctx = None
    if isinstance(data, dict) and data.get("tls"):
        ctx = client_context(data.get("cert"), data.get("key"), data.get("ca"))
    _published[path] = (stamp, ctx)
    return ctx

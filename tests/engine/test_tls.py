"""engine/wire/tls.py: throwaway CAs and certificates, contexts, DNs, expiry, clear errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from engine import rules
from engine.wire import tls

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    ca = tls.make_ca(d)
    other = tls.make_ca(d, name="Other CA", prefix="other")
    now = dt.datetime.now(dt.UTC)
    return {
        "dir": d,
        "ca": ca,
        "other": other,
        "server": tls.make_cert(ca, d, "member-a"),
        "client": tls.make_cert(ca, d, "portal", org="Example Org"),
        "foreign": tls.make_cert(other, d, "portal", name="foreign"),
        "expired": tls.make_cert(
            ca,
            d,
            "old",
            not_before=now - dt.timedelta(days=5),
            not_after=now - dt.timedelta(days=1),
        ),
    }


def test_private_keys_are_written_owner_only(certs):
    for path in (certs["ca"].key_path, certs["server"].key):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_certificate_info_reports_dn_issuer_and_expiry(certs):
    info = tls.check_certificate(certs["client"].cert, certs["ca"].cert_path)
    assert info["subject_dn"] == "CN=portal,O=Example Org"
    assert info["issuer_dn"] == certs["ca"].dn
    assert info["expired"] is False
    assert 6.9 < info["days_left"] <= 7.0
    assert dt.datetime.fromisoformat(info["not_after"]) > dt.datetime.now(dt.UTC)


def test_an_expired_certificate_is_reported_with_its_date(certs):
    with pytest.raises(tls.TLSError, match="CN=old,O=Mirror Portal expired on 20"):
        tls.check_certificate(certs["expired"].cert)
    assert tls.cert_info(tls.load_certificate(certs["expired"].cert))["expired"] is True


def test_a_certificate_from_another_ca_is_reported(certs):
    with pytest.raises(tls.TLSError, match="was not issued by the CA in .*Other CA|not issued"):
        tls.check_certificate(certs["foreign"].cert, certs["ca"].cert_path)


def test_missing_and_non_pem_files_get_clear_errors(certs, tmp_path):
    with pytest.raises(tls.TLSError, match="certificate file not found: .*nope.pem"):
        tls.load_certificate(tmp_path / "nope.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(tls.TLSError, match="junk.pem: not a PEM certificate"):
        tls.load_certificate(junk)
    with pytest.raises(tls.TLSError, match="private key file not found"):
        tls.server_context(certs["server"].cert, tmp_path / "missing-key.pem")
    with pytest.raises(tls.TLSError, match="CA certificate file not found"):
        tls.client_context(ca=tmp_path / "missing-ca.pem")


def test_a_key_that_does_not_match_the_certificate_is_refused(certs):
    with pytest.raises(tls.TLSError, match="does not belong to the certificate|cannot use"):
        tls.server_context(certs["server"].cert, certs["client"].key)


def test_an_expired_own_certificate_is_refused_when_serving(certs):
    with pytest.raises(tls.TLSError, match="expired on"):
        tls.server_context(certs["expired"].cert, certs["expired"].key, certs["ca"].cert_path)


def test_load_ca_signs_more_certificates(certs, tmp_path):
    ca = tls.load_ca(certs["dir"])
    paths = tls.make_cert(ca, tmp_path, "later")
    assert tls.check_certificate(paths.cert, certs["ca"].cert_path)["subject_dn"].startswith(
        "CN=later"
    )


def test_dns_are_normalized_to_one_rfc4514_spelling():
    assert tls.normalize_dn("  CN=portal,O=Mirror Portal ") == "CN=portal,O=Mirror Portal"
    assert tls.normalize_dn("cn=portal,o=Mirror Portal") == "CN=portal,O=Mirror Portal"
    assert tls.normalize_dn("CN=a\\,b") == "CN=a\\,b"
    for bad in ("", "   ", "no equals sign", 42):
        with pytest.raises(tls.TLSError):
            tls.normalize_dn(bad)


async def _mutual_tls_round_trip(certs, client_paths):
    """Serve one mutual-TLS connection on loopback; return (peer DN seen, client error)."""
    server_ctx = tls.server_context(
        certs["server"].cert, certs["server"].key, certs["ca"].cert_path
    )
    seen: list[str | None] = []

    async def handle(reader, writer):
        seen.append(tls.peer_dn(writer.get_extra_info("ssl_object")))
        writer.write(b"hello " + (await reader.readexactly(4)))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    cert, key = (client_paths.cert, client_paths.key) if client_paths else (None, None)
    client_ctx = tls.client_context(cert, key, certs["ca"].cert_path)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        writer.write(b"ping")
        reply = await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        return seen, reply
    except (ssl.SSLError, ConnectionError) as exc:
        return seen, exc
    finally:
        server.close()
        await server.wait_closed()


def test_mutual_tls_over_loopback_shows_the_client_dn(certs):
    seen, reply = asyncio.run(_mutual_tls_round_trip(certs, certs["client"]))
    assert reply == b"hello ping"
    assert seen == ["CN=portal,O=Example Org"]


@pytest.mark.parametrize("who", ["foreign", "expired", None])
def test_mutual_tls_refuses_foreign_expired_or_missing_client_certificates(certs, who):
    seen, reply = asyncio.run(_mutual_tls_round_trip(certs, certs[who] if who else None))
    assert seen == []  # the server never got a verified connection
    assert reply != b"hello ping"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine.wire.tls_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_the_command_line_makes_a_ca_and_certificates_and_shows_them(tmp_path):
    made = run_cli("make-ca", str(tmp_path), "--name", "Demo CA")
    assert made.returncode == 0, made.stderr
    made = run_cli("make-cert", str(tmp_path), "--cn", "member-b", "--org", "Demo")
    assert made.returncode == 0, made.stderr
    assert "CN=member-b,O=Demo" in made.stdout
    shown = run_cli("show", str(tmp_path / "member-b.pem"), "--ca", str(tmp_path / "ca.pem"))
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["issuer_dn"] == "CN=Demo CA,O=Mirror Portal"
    assert info["expired"] is False


@pytest.mark.parametrize(
    ("usage", "may_be_a_member"), [("member", True), ("server", False), ("client", False)]
)
def test_only_a_member_certificate_may_be_a_member(tmp_path, usage, may_be_a_member):
    assert run_cli("make-ca", str(tmp_path)).returncode == 0
    made = run_cli("make-cert", str(tmp_path), "--cn", "X", "--usage", usage)
    assert made.returncode == 0, made.stderr
    cert = tls.load_certificate(tmp_path / "X.pem")
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    names = [oid._name for oid in eku]
    if may_be_a_member:
        rules.check_member_certificate("CN=X", names)
    else:
        with pytest.raises(rules.RuleError, match="is not a member certificate"):
            rules.check_member_certificate("CN=X", names)
    assert run_cli("make-cert", str(tmp_path), "--cn", "Y", "--usage", "any").returncode == 2


def test_the_command_line_explains_unusable_certificates(certs, tmp_path):
    expired = run_cli("show", str(certs["expired"].cert))
    assert expired.returncode == 1 and "expired on" in expired.stderr
    foreign = run_cli("show", str(certs["foreign"].cert), "--ca", str(certs["ca"].cert_path))
    assert foreign.returncode == 1 and "not issued by the CA" in foreign.stderr
    missing = run_cli("make-cert", str(tmp_path / "no-ca-here"), "--cn", "x")
    assert missing.returncode == 1 and "file not found" in missing.stderr


def test_the_command_line_writes_a_private_credential_once(tmp_path):
    path = tmp_path / "agent.credential"
    assert run_cli("make-credential", str(path)).returncode == 0
    assert len(path.read_text().strip()) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = run_cli("make-credential", str(path))
    assert again.returncode == 1 and "not overwriting" in again.stderr

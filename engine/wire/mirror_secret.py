"""The mirror secret: how the members of a mirror without TLS prove themselves on the data channel.

With TLS a member is known by its certificate.  Without it, a member name in DC_HELLO would prove
nothing (issue 12: a stranger said hello as the backup and its acks were counted as durability).
So every mirror configured through agents gets a secret of 256 random bits when it is created;
the primary's agent hands it to the instances that join (never the data channel), and each
member keeps it in its mirror.json, which only the instance's user can read.

The handshake (engine/PROTOCOL.md "Data channel authentication") is a challenge in both
directions, so the secret never travels and an old exchange replayed proves nothing:

    member  -> primary   DC_HELLO     {..., nonce: member_nonce}
    primary -> member    DC_CHALLENGE {nonce: primary_nonce}
    member  -> primary   DC_HELLO     {..., nonce: member_nonce, proof: member_proof}
    primary -> member    DC_WELCOME   {..., proof: primary_proof}

    member_proof  = HMAC-SHA256(secret, "member"  | mirror | member  | member_nonce | primary_nonce)
    primary_proof = HMAC-SHA256(secret, "primary" | mirror | primary | member_nonce | primary_nonce)

The primary answers a hello only once the proof matches (compared in constant time); the
member takes journal only from a primary whose proof matches, so a stranger cannot pose as the
primary either.  What follows the handshake is not encrypted or signed: against someone who
can read or change the traffic on the way, a mirror needs TLS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

SECRET_BYTES = 32
NONCE_BYTES = 16


class SecretError(ValueError):
    """A secret or a nonce that is not of the expected form."""


def new_secret() -> str:
    """A fresh mirror secret, as it is written in mirror.json and sent to a joining agent."""
    return base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


SECRET_RE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
SECRET_FORM = "a mirror secret is 43 characters of url-safe base64 (32 bytes)"


def check_secret(value: object) -> str:
    """`value` if it is a mirror secret (url-safe base64 of 32 bytes), else SecretError."""
    # b64decode would skip characters outside the alphabet: check the form itself
    if not isinstance(value, str) or not SECRET_RE.fullmatch(value):
        raise SecretError(SECRET_FORM)
    return value


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def check_nonce(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != NONCE_BYTES:
        raise SecretError(f"a data channel nonce is {NONCE_BYTES} bytes")
    return value


def _proof(role: bytes, secret: str, mirror: str, name: str, ours: bytes, theirs: bytes) -> bytes:
    key = base64.urlsafe_b64decode(secret + "=")
    # lengths first, so that no two different (mirror, name) pairs give the same message
    parts = [role, mirror.encode(), name.encode(), ours, theirs]
    message = b"".join(len(p).to_bytes(2, "big") + p for p in parts)
    return hmac.new(key, message, hashlib.sha256).digest()


def member_proof(secret: str, mirror: str, member: str, member_nonce: bytes, primary_nonce: bytes):
    return _proof(b"member", secret, mirror, member, member_nonce, primary_nonce)


def primary_proof(
    secret: str, mirror: str, primary: str, member_nonce: bytes, primary_nonce: bytes
) -> bytes:
    return _proof(b"primary", secret, mirror, primary, member_nonce, primary_nonce)


def arbiter_proof(secret: str, mirror: str, member: str, arbiter_nonce: bytes) -> bytes:
    """What a failover member shows the arbiter (engine/failover/arbiter.py), which relays it to
    the partner: HMAC(secret, "arbiter" | mirror | member | arbiter_nonce), each part preceded
    by its length like the proofs above.  The arbiter knows no secret; the partner checks it,
    so a stranger registered under this member's name is never taken for it."""
    key = base64.urlsafe_b64decode(secret + "=")
    parts = [b"arbiter", mirror.encode(), member.encode(), arbiter_nonce]
    message = b"".join(len(p).to_bytes(2, "big") + p for p in parts)
    return hmac.new(key, message, hashlib.sha256).digest()


def partner_proof(secret: str, mirror: str, asker: str, target: str, stamp: str) -> str:
    """What a failover member shows its partner's agent to ask about the partner
    (engine/agent/partner.py): hex HMAC(secret, "partner" | mirror | asker | target | stamp),
    `stamp` being "<unix seconds>:<random hex>" so that a proof is good once and briefly."""
    return _proof(b"partner", secret, mirror, f"{asker}>{target}", stamp.encode(), b"").hex()


def same(expected: bytes, given: object) -> bool:
    """Whether `given` is the proof expected, compared in constant time."""
    return isinstance(given, bytes) and hmac.compare_digest(expected, given)

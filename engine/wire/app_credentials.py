"""Application credentials on the superserver: the challenge-response both sides compute.

A credential is a name and a generated secret.  The instance keeps only what verifies a proof
(engine/member/app_auth.py), never the secret: a per-credential random salt, the iteration
count, and two keys derived from the secret as SCRAM does (RFC 5802, SHA-256):

    salted     = PBKDF2-HMAC-SHA256(secret, salt, iterations)
    client_key = HMAC(salted, "Client Key")      stored_key = SHA-256(client_key)
    server_key = HMAC(salted, "Server Key")

On a connection the client asks for a challenge (ADMIN `auth_challenge` {name}), gets the
server's fresh nonce with the salt and iterations, and answers (ADMIN `auth` {name, nonce,
proof}) with

    message = "<name>,<server nonce>,<client nonce>"
    proof   = client_key XOR HMAC(stored_key, message)

The server recovers client_key = proof XOR HMAC(stored_key, message) and compares
SHA-256(client_key) with stored_key in constant time; it answers HMAC(server_key, message),
which the client checks, so it knows it spoke to an instance holding the credential.  The
secret never travels, a proof is good for one server nonce only (one per connection, used
once), and the stored keys alone cannot make a proof.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

MECHANISM = "SCRAM-SHA-256"
CHALLENGE_ACTION = "auth_challenge"
AUTH_ACTION = "auth"
NONCE_BYTES = 18
SALT_BYTES = 16
SECRET_BYTES = 32  # the generated secret: 256 random bits, url-safe base64
# The secrets are generated with 256 bits of entropy, so the iteration count is not what
# resists guessing; it is kept in each record so that it can be raised later.
ITERATIONS = 20_000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str) or len(text) > 200:
        raise ValueError(f"{what} must be base64 text")
    try:
        return base64.b64decode(text.encode(), validate=True)
    except ValueError:
        raise ValueError(f"{what} is not valid base64") from None


def new_nonce() -> str:
    return secrets.token_urlsafe(NONCE_BYTES)


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def salted_password(secret: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def derive_keys(salted: bytes) -> tuple[bytes, bytes, bytes]:
    """(client_key, stored_key, server_key) of a salted password."""
    client_key = _hmac(salted, b"Client Key")
    return client_key, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key")


def auth_message(name: str, server_nonce: str, client_nonce: str) -> bytes:
    return f"{name},{server_nonce},{client_nonce}".encode()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def client_proof(client_key: bytes, stored_key: bytes, message: bytes) -> bytes:
    return _xor(client_key, _hmac(stored_key, message))


def check_proof(stored_key: bytes, message: bytes, proof: bytes) -> bool:
    """Constant-time: does `proof` show the client_key whose hash is stored_key?"""
    if len(proof) != len(stored_key):
        return False
    client_key = _xor(proof, _hmac(stored_key, message))
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)


def server_signature(server_key: bytes, message: bytes) -> bytes:
    return _hmac(server_key, message)

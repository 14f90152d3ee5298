"""Secrets at rest: the secrets the portal must send on (an agent's bearer credential) are kept
encrypted with Fernet keys from the environment, never in clear (docs/hardening.md).

PORTAL_SECRET_KEYS holds comma-separated Fernet keys: the first encrypts, every one decrypts
(MultiFernet), so a key is rotated by putting a new one first, running `manage.py
rotate_secrets`, then dropping the old one. Without it — only on the embedded default, see
`check_keys` — a key is generated once into PORTAL_VAR_DIR/secret-keys.

`EncryptedCharField` stores `fernet:<token>` text. Rows load still sealed; the plaintext is
made only when the attribute is read, so listing hosts never needs the key, and saving a row
whose secret was never read writes its token back unchanged.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from tasks.errors import PermanentJobError

log = logging.getLogger(__name__)

PREFIX = "fernet:"
DEV_KEY_FILE = "secret-keys"
MAKE_A_KEY = (
    "make one with: python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'"
)


class SecretUnreadable(ValidationError, PermanentJobError, ValueError):
    """A stored secret that no key in PORTAL_SECRET_KEYS opens (the key that sealed it is gone).

    Said where it is met, never as a crash: a service validating the row refuses with it (the API
    answers 400), a job that needs the secret fails with it (retrying cannot help), and the
    admin's displays show an empty value (they pass over a ValueError)."""

    def __init__(self, message: str):
        super().__init__(message, code="secret_unreadable")

    def __str__(self) -> str:
        return self.message


# --- Keys -------------------------------------------------------------------------------------
def check_keys(keys: list[str], *, production: bool) -> list[str]:
    """PORTAL_SECRET_KEYS as settings keeps it: each a Fernet key, and some in production.

    Production is recognised as `check --deploy` recognises it: DJANGO_SECRET_KEY is set. The
    embedded default (no DJANGO_SECRET_KEY) falls back to a generated key file instead."""
    if production and not keys:
        raise ImproperlyConfigured(
            "PORTAL_SECRET_KEYS must be set in production (DJANGO_SECRET_KEY is set): its Fernet "
            f"keys encrypt the agent credentials the portal keeps; {MAKE_A_KEY}"
        )
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"PORTAL_SECRET_KEYS: key {number} of {len(keys)} is not a Fernet key "
                f"(32 url-safe base64-encoded bytes); {MAKE_A_KEY}"
            ) from None
    return keys


def keyring() -> MultiFernet:
    """The keys in use: PORTAL_SECRET_KEYS, else the embedded default's key file."""
    keys = tuple(settings.PORTAL_SECRET_KEYS) or development_keys(Path(settings.VAR_DIR))
    return _keyring(keys)


@functools.lru_cache(maxsize=8)
def _keyring(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


@functools.lru_cache(maxsize=8)
def development_keys(var_dir: Path) -> tuple[str, ...]:
    """The embedded default's keys: PORTAL_VAR_DIR/secret-keys (one key a line), generated once,
    readable by its owner alone — like the demo admin's password. Kept apart from the database,
    so a copy of var/portal.sqlite3 alone opens nothing."""
    path = var_dir / DEV_KEY_FILE
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        draft = var_dir / f".{DEV_KEY_FILE}.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode() + "\n")
        try:
            os.link(draft, path)  # the first process to get there wins; the others read its key
            log.info("Generated the development key for secrets at rest: %s", path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    keys = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not keys:
        raise ImproperlyConfigured(f"{path} holds no key; remove it to have one generated")
    return tuple(check_keys(keys, production=False))


# --- Sealing ----------------------------------------------------------------------------------
def seal(plaintext: str) -> str:
    """`fernet:<token>` for `plaintext`, encrypted with the first key."""
    return PREFIX + keyring().encrypt(plaintext.encode()).decode()


def unseal(stored: str) -> str:
    """The plaintext of a `fernet:<token>`; InvalidToken when no key opens it (or it is no
    token at all)."""
    if not stored.startswith(PREFIX):
        raise InvalidToken
    return keyring().decrypt(stored[len(PREFIX) :].encode()).decode()


def reseal(stored: str) -> str:
    """The same secret sealed again with the first key (MultiFernet.rotate); InvalidToken as
    `unseal`."""
    if not stored.startswith(PREFIX):
        raise InvalidToken
    return PREFIX + keyring().rotate(stored[len(PREFIX) :].encode()).decode()


class Sealed:
    """A stored secret as it came from the database: its token, never its plaintext."""

    __slots__ = ("token",)

    def __init__(self, token: str):
        self.token = token

    def __eq__(self, other):
        return isinstance(other, Sealed) and other.token == self.token

    def __hash__(self):
        return hash(self.token)

    def __repr__(self):
        return "<sealed secret>"


class _SecretAttribute(DeferredAttribute):
    """Opens the sealed value when the attribute is read; keeps what is assigned as it is."""

    def __get__(self, instance, cls=None):
        value = super().__get__(instance, cls)
        if instance is None or not isinstance(value, Sealed):
            return value
        try:
            return unseal(value.token)
        except InvalidToken:
            raise SecretUnreadable(
                f"{instance._meta.verbose_name.capitalize()} {instance}: its stored "
                f"{self.field.verbose_name} cannot be decrypted with any key in "
                "PORTAL_SECRET_KEYS. Put back the key that encrypted it, or set it again."
            ) from None

    def __set__(self, instance, value):
        instance.__dict__[self.field.attname] = value


class EncryptedCharField(models.CharField):
    """A CharField whose column holds `fernet:<token>` text (of any length: a text column),
    while `max_length` and the other validation apply to the plaintext. "" stays "" (no secret
    set), so `filter(credential="")` still finds hosts without one."""

    descriptor_class = _SecretAttribute

    def get_internal_type(self):
        return "TextField"

    def from_db_value(self, value, expression, connection):
        return Sealed(value) if value else value

    def pre_save(self, model_instance, add):
        # the value as held (possibly still sealed), not the attribute: no decrypting to save
        return model_instance.__dict__.get(self.attname)

    def get_prep_value(self, value):
        if isinstance(value, Sealed):
            return value.token
        value = super().get_prep_value(value)
        return seal(value) if value else value

    def value_to_string(self, obj):
        """dumpdata writes the token, never the plaintext."""
        value = obj.__dict__.get(self.attname)
        return self.get_prep_value(value) or ""

"""Exceptions the services raise that are not about the input alone."""

from django.core.exceptions import ValidationError


class StateConflict(ValidationError):
    """The change no longer fits the state it was meant for: another request decided first.

    The API answers 409 with `code` (portal/errors.py); pages show the message like any
    refusal, since it is a ValidationError too.
    """

    def __init__(self, message: str, code: str = "conflict"):
        super().__init__(message, code=code)

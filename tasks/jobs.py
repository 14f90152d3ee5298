"""What each kind of job does: the handlers of members.operations, by kind."""

from members.operations import HANDLERS

__all__ = ["HANDLERS"]

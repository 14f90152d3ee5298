"""What the agent client raises: the agent's error answer, or no answer at all."""

from __future__ import annotations


class AgentError(Exception):
    """The agent's error answer; `rule` is the reason code of engine/rules.py when the
    request broke a mirroring rule (the portal shows the same code as its own validation)."""

    def __init__(self, status: int, code: str, message: str, rule: str | None = None):
        super().__init__(f"agent answered {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.rule = rule


class AgentConnectionError(Exception):
    pass

"""Clients of the engine's two public ports, for scripts, tests, the launcher and the portal.

app: Client / AsyncClient on a member's superserver (reads, writes, admin actions).
agent: AgentClient on a host agent's /v1 control API.  stream: StatusStream, the follower of
an agent's status stream; errors: what the agent client raises.  The portal imports agent and
stream, and nothing else of the engine but the rule catalog.
"""

"""Automatic failover between the two failover members of a mirror (issue 13, guide §3.3).

The failover decisions and what they rest on; the actions are engine/member's
(failover_watch.py, takeover.py, agent_confirm.py, hooks.py, failover_ops.py):

    arbiter.py       the arbiter service (guide §3.1.4, §3.3.4): a listener, run by an agent
                     or on its own (`python -m engine arbiter`), that keeps in contact with
                     the failover members of many mirrors and tells each whether it still
                     sees that member's partner
    arbiter_link.py  a failover member's side of it: keeps contact with the arbiter and
                     says whether the arbiter sees the partner (checked by the mirror secret)
    modes.py         pure logic: the failover mode and the decision of one failover member
                     from what it knows (guide §3.3.5, Table 3–1)
    state.py         the term and the last primary a failover member remembers (failover.json),
                     which decides roles at start-up

The layer sits between engine.member (which runs the link and acts on the decisions) and
engine.replication: it imports only replication, storage, client, wire and rules
(.importlinter).  docs/failover.md and docs/takeover.md say how it works and what is not built.
"""

"""Automatic failover between the two failover members of a mirror (issue 13, guide §3.3).

What is here so far is the context the failover decisions need, not the decisions' actions:

    arbiter.py       the arbiter service (guide §3.1.4, §3.3.4): a listener, run by an agent
                     or on its own (`python -m engine arbiter`), that keeps in contact with
                     the failover members of many mirrors and tells each whether it still
                     sees that member's partner
    arbiter_link.py  a failover member's side of it: keeps contact with the arbiter and
                     says whether the arbiter sees the partner (checked by the mirror secret)
    modes.py         pure logic: the failover mode and the decision of one failover member
                     from what it knows (guide §3.3.5, Table 3–1)

The layer sits between engine.member (which will run a link and act on the decisions) and
engine.replication: it imports only replication, storage, client, wire and rules
(.importlinter).  docs/failover.md says how it works and what is not built yet.
"""

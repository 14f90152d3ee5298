"""Names of the marker files a member keeps in its data directory: what the process and the
operator's stops leave behind for the next start (and for the agent, which finds the pid)."""

PID_FILE = "instance.pid"  # the process to force down (engine/agent/probe.py)
STOPPED_FILE = "mirroring.stopped"  # present while mirroring is stopped here (guide §5.8)
DEJOURNAL_STOPPED_FILE = "dejournal.stopped"  # present while dejournaling is stopped (§5.9)
# a failover member's {mirror, member, secret}, owner-only: its host's agent checks with it a
# partner's request about this member (engine/agent/partner.py), even while it is down
PARTNER_AUTH_FILE = "partner-auth.json"

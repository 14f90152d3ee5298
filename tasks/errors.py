class JobError(Exception):
    """A job failed for a reason worth showing the operator as it is."""


class TransientJobError(JobError):
    """Worth retrying: the peer may come back (a timeout, a refused connection, an agent whose
    instance is restarting)."""


class PermanentJobError(JobError):
    """Retrying cannot help (a member refused by a rule, a precondition that does not hold)."""


class JobCancelled(JobError):
    """The operator cancelled the job; it stopped at a wait."""

class JobError(Exception):
    """A job failed for a reason worth showing the operator as it is."""


class TransientJobError(JobError):
    """Worth retrying: the peer may come back (a timeout, a refused connection)."""


class PermanentJobError(JobError):
    """Retrying cannot help (bad configuration, a precondition that does not hold)."""

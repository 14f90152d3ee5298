"""The failover operations on a member through the API (guide §3.4, §5.5 - §5.6, §6.1 - §6.3;
members.failover_actions): each starts a job that asks the members and records what they
answer. MemberViewSet (members/api/views.py) takes them in with this mixin.

A graceful stop and "no failover" are for operators; whatever makes or changes which member
would be the primary (forcing one, promoting, demoting, promoting a DR async to primary with no
primary running, clearing ValidatedMember) is for admins, the dangerous ones in two steps or
with the mirror's name typed."""

from accounts.roles import OPERATOR
from members import failover_actions
from members.api import serializers as s
from members.api.job_actions import accepted, body, operation

FAILOVER_ROLES = dict.fromkeys(["stop_instance", "set_no_failover", "clear_no_failover"], OPERATOR)


class FailoverActions:
    """The failover actions of a member's viewset (self.get_object() is the member)."""

    @operation(url_path="stop-instance")
    def stop_instance(self, request, pk=None):
        """Graceful shutdown of the member's instance. A primary hands over to its Active
        backup on the way, and the job waits until that backup says Primary; with no Active
        backup (or no failover set) nobody takes over."""
        return accepted(failover_actions.stop_instance(request.user, self.get_object()))

    @operation(url_path="set-no-failover")
    def set_no_failover(self, request, pk=None):
        """No automatic takeover until cleared, or until a primary starts (which clears it). A
        failover member only; set on the primary, it reaches the backup with its heartbeats."""
        return accepted(failover_actions.set_no_failover(request.user, self.get_object()))

    @operation(url_path="clear-no-failover")
    def clear_no_failover(self, request, pk=None):
        """Allow automatic takeover again."""
        return accepted(failover_actions.clear_no_failover(request.user, self.get_object()))

    @operation(url_path="force-primary/preview")
    def preview_force_primary(self, request, pk=None):
        """Step one of forcing this failover member to become primary, while no primary runs:
        nothing changes; the job's result is what is at stake, as the member answers it
        (was_active_backup, journal_end, last_primary, term, warning). Then step two."""
        return accepted(failover_actions.preview_force_primary(request.user, self.get_object()))

    @operation(s.ConfirmSerializer, url_path="force-primary")
    def force_primary(self, request, pk=None):
        """Step two: the member becomes primary (confirm: the mirror's name). Anything the last
        primary committed after the member's journal end (step one's answer) is lost, and that
        primary must stay down. Refused (409) while another member says it is the primary."""
        fields = body(request, s.ConfirmSerializer)
        return accepted(failover_actions.force_primary(request.user, self.get_object(), **fields))

    @operation(url_path="rebuild/preview")
    def preview_rebuild_member(self, request, pk=None):
        """Step one of rebuilding this member (guide §5.7), whose data the primary refused as
        inconsistent with the mirror: nothing changes; the job's result is what is at stake
        as the member answers it (journal_end, databases, refused_because, warning)."""
        return accepted(failover_actions.preview_rebuild_member(request.user, self.get_object()))

    @operation(s.ConfirmSerializer, url_path="rebuild")
    def rebuild_member(self, request, pk=None):
        """Step two (confirm: the mirror's name): the member sets its journal and database
        files aside on its host and takes them again from the mirror; the job waits until it
        runs in its role with every database taken again. Refused (409) on the primary and on
        a member last seen Down."""
        fields = body(request, s.ConfirmSerializer)
        member = self.get_object()
        return accepted(failover_actions.rebuild_member(request.user, member, **fields))

    # promotion and demotion (guide §5.5, §5.6): asked of the primary; admins only, typed name
    @operation(s.ConfirmSerializer, url_path="promote")
    def promote(self, request, pk=None):
        """This DR async becomes a failover member, the backup, and the backup there was
        becomes DR (confirm: the mirror's name). It needs a mirror private address; the primary
        refuses (409, with its reason) a member that is not connected and caught up. The job
        waits until the members report their new types and records them."""
        fields = body(request, s.ConfirmSerializer)
        return accepted(failover_actions.promote_member(request.user, self.get_object(), **fields))

    @operation(s.ConfirmSerializer, url_path="demote")
    def demote(self, request, pk=None):
        """The backup becomes a DR async (confirm: the mirror's name): nothing takes over
        automatically until a DR async is promoted. Refused for the primary and for a member
        that is not a failover member. The job waits until the member reports its new type."""
        fields = body(request, s.ConfirmSerializer)
        return accepted(failover_actions.demote_member(request.user, self.get_object(), **fields))

    # disaster recovery, no primary running (guide §5.5, §6.3): admins only, in two steps
    @operation(s.PartnerSerializer, url_path="promote-to-primary/preview")
    def preview_promote_to_primary(self, request, pk=None):
        """Step one of promoting this DR async to primary while no primary runs, with the
        partner named (one of the mirror's failover members) or none: nothing changes; the
        job's result is what is at stake, as the member answers it (journal_end,
        last_primary, term, partner, warning). Then step two."""
        fields = body(request, s.PartnerSerializer)
        member = self.get_object()
        return accepted(failover_actions.preview_promote_to_primary(request.user, member, **fields))

    @operation(s.PromoteToPrimarySerializer, url_path="promote-to-primary")
    def promote_to_primary(self, request, pk=None):
        """Step two: the DR async restarts as the primary at a new term (confirm: the mirror's
        name). With a partner, its agent must confirm it down and its journal beyond this
        member's is copied first; with none, whatever the failover members committed after
        this member's journal end (step one's answer) is lost. The partner stays a failover
        member, every other failover member becomes DR. Refused (409 has_primary) while a
        member says it is the primary. The job waits until the member says Primary and
        records the mirror as it then reports it."""
        fields = body(request, s.PromoteToPrimarySerializer)
        member = self.get_object()
        return accepted(failover_actions.promote_to_primary(request.user, member, **fields))

    @operation(url_path="clear-validated-member")
    def clear_validated_member(self, request, pk=None):
        """ValidatedMember=0 on the member's stopped instance: at its next start it never
        becomes primary by itself and takes the role the primary it finds gives it. Clear it
        on each former failover member after a promotion with no partner, before it starts.
        Refused (409 not_down) unless the member was last seen Down; the agent refuses (the
        job fails with its reason) while the instance runs."""
        member = self.get_object()
        return accepted(failover_actions.clear_validated_member(request.user, member))

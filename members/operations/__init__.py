"""Every operation the portal runs on real members, as job handlers: kind -> function(run).

A handler gets a tasks.runner.JobRun (the job's params, progress, bounded waits), talks to the
agents through members.agents, and returns what the members answered (JSON) after recording it
with a refresh. members.actions validates a request and starts the job."""

from accounts.roles import ADMIN, OPERATOR
from members.operations import (
    app_credentials,
    databases,
    discovery,
    failover,
    membership,
    recovery,
)

HANDLERS = {
    # reading the members
    "check_host": discovery.check_host,
    "import_mirror": discovery.import_mirror,
    "refresh_mirror": discovery.refresh_mirror,
    "review_mirror": discovery.review_mirror,
    "adopt_settings": discovery.adopt_settings,
    "reapply_settings": discovery.reapply_settings,
    "set_instance_tls": discovery.set_instance_tls,
    # membership
    "create_mirror": membership.create_mirror,
    "join_mirror": membership.join_mirror,
    "authorize_member": membership.authorize_member,
    "reject_member": membership.reject_member,
    "authorize_dn_update": membership.authorize_dn_update,
    "reject_dn_update": membership.reject_dn_update,
    "edit_mirror": membership.edit_mirror,
    "update_member_address": membership.update_member_address,
    "set_superserver_port": membership.set_superserver_port,
    "remove_member": membership.remove_member,
    "leave_mirror": membership.leave_mirror,
    "remove_mirror": membership.remove_mirror,
    "stop_mirroring": membership.stop_mirroring,
    "start_mirroring": membership.start_mirroring,
    "stop_dejournaling": membership.stop_dejournaling,
    "start_dejournaling": membership.start_dejournaling,
    # failover (guide §3.4, §6.1 - §6.2)
    "stop_instance": failover.stop_instance,
    "set_no_failover": failover.set_no_failover,
    "clear_no_failover": failover.clear_no_failover,
    "preview_force_primary": failover.preview_force_primary,
    "force_primary": failover.force_primary,
    "preview_rebuild_member": failover.preview_rebuild_member,
    "rebuild_member": failover.rebuild_member,
    "promote_member": failover.promote_member,
    "demote_member": failover.demote_member,
    # disaster recovery: no primary runs (guide §5.5, §6.3)
    "preview_promote_to_primary": recovery.preview_promote_to_primary,
    "promote_to_primary": recovery.promote_to_primary,
    "clear_validated_member": recovery.clear_validated_member,
    # databases
    "create_database": databases.create_database,
    "add_database_copy": databases.add_database_copy,
    "download_database": databases.download_database,
    "activate_database": databases.activate_database,
    "catchup_databases": databases.catchup_databases,
    "mount_database": databases.mount_database,
    "dismount_database": databases.dismount_database,
    "remove_database": databases.remove_database,
    "clear_failover_db": databases.clear_failover_db,
    "pause_dejournaling": databases.pause_dejournaling,
    "resume_dejournaling": databases.resume_dejournaling,
    # application credentials of a member's instance
    "list_app_credentials": app_credentials.list_app_credentials,
    "create_app_credential": app_credentials.create_app_credential,
    "revoke_app_credential": app_credentials.revoke_app_credential,
}

# Who may run each kind, again included (a retry re-runs the same request): the weakest role,
# on the job's mirror, or portal-wide for the kinds of no single mirror (docs/access.md).
ROLE_TO_RUN = {kind: ADMIN for kind in HANDLERS} | {
    kind: OPERATOR
    for kind in (
        "check_host",
        "refresh_mirror",
        "review_mirror",
        "stop_mirroring",
        "start_mirroring",
        "stop_dejournaling",
        "start_dejournaling",
        "stop_instance",
        "set_no_failover",
        "clear_no_failover",
        "create_database",
        "add_database_copy",
        "download_database",
        "activate_database",
        "catchup_databases",
        "mount_database",
        "dismount_database",
        "remove_database",
        "clear_failover_db",
        "pause_dejournaling",
        "resume_dejournaling",
        app_credentials.LIST,
        app_credentials.CREATE,
        app_credentials.REVOKE,
    )
}
PORTAL_WIDE_KINDS = frozenset({"check_host", "import_mirror", "set_instance_tls", "create_mirror"})
# Kinds that act on the member's whole instance, which a reporting async shares with its other
# mirrors (guide §2: an async may receive from several mirrors): they need the role on each.
WHOLE_INSTANCE_KINDS = frozenset(
    {
        "stop_instance",
        "set_superserver_port",
        "preview_rebuild_member",
        "rebuild_member",
        app_credentials.LIST,
        app_credentials.CREATE,
        app_credentials.REVOKE,
    }
)

"""The mirror configuration in the admin: to look at, never to change.

Mirrors, hosts, members, DN updates, databases and copies change only through `members.services`
(called by the pages, the API and jobs), which validate every rule, write the audit event and
will act on the members themselves; an admin form saving rows would bypass all three.
"""

from django.contrib import admin

from members.models import (
    DatabaseCopy,
    Host,
    Member,
    Mirror,
    MirroredDatabase,
    PendingDNUpdate,
    PendingMember,
)
from portal.admin import NoWrites, ReadOnlyAdmin


class MemberInline(NoWrites, admin.TabularInline):
    model = Member
    extra = 0
    fields = ["name", "member_type", "host", "authorization"]
    readonly_fields = fields
    show_change_link = True


@admin.register(Mirror)
class MirrorAdmin(ReadOnlyAdmin):
    list_display = ["name", "requires_tls", "arbiter_host", "qos_timeout_ms"]
    list_filter = ["requires_tls"]
    search_fields = ["name"]
    inlines = [MemberInline]


@admin.register(Host)
class HostAdmin(ReadOnlyAdmin):
    list_display = ["name", "address", "agent_port", "reachable", "rtt_ms", "last_checked_at"]
    list_filter = ["reachable"]
    search_fields = ["name", "address"]
    # The agent credential is a secret (kept in clear because it is sent to the agent; the API
    # never returns it): the admin only says whether there is one.
    exclude = ["credential"]
    readonly_fields = ["has_credential"]

    @admin.display(boolean=True, description="Agent credential set")
    def has_credential(self, host):
        return bool(host.credential)


@admin.register(Member)
class MemberAdmin(ReadOnlyAdmin):
    list_display = ["name", "mirror", "member_type", "host", "authorization"]
    list_filter = ["member_type", "authorization", "mirror"]
    search_fields = ["name", "x509_dn"]
    list_select_related = ["mirror", "host"]


@admin.register(PendingMember)
class PendingMemberAdmin(MemberAdmin):
    pass


@admin.register(PendingDNUpdate)
class PendingDNUpdateAdmin(ReadOnlyAdmin):
    list_display = ["member", "new_dn", "state", "requested_at", "decided_at"]
    list_filter = ["state"]
    search_fields = ["member__name", "member__mirror__name", "new_dn"]
    list_select_related = ["member__mirror"]


@admin.register(MirroredDatabase)
class MirroredDatabaseAdmin(ReadOnlyAdmin):
    list_display = ["name", "mirror", "mount_required_at_startup"]
    list_filter = ["mirror"]
    search_fields = ["name"]
    list_select_related = ["mirror"]


@admin.register(DatabaseCopy)
class DatabaseCopyAdmin(ReadOnlyAdmin):
    list_display = ["database", "member", "status", "failover_db"]
    list_filter = ["status"]
    search_fields = ["database__name", "member__name"]
    list_select_related = ["database__mirror", "member__mirror"]

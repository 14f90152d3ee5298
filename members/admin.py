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
from portal.admin import AuditedAdmin


class MemberInline(admin.TabularInline):
    model = Member
    extra = 0
    fields = ["name", "member_type", "host", "authorization"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Mirror)
class MirrorAdmin(AuditedAdmin):
    list_display = ["name", "requires_tls", "arbiter_host", "qos_timeout_ms"]
    search_fields = ["name"]
    inlines = [MemberInline]

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj else []


@admin.register(Host)
class HostAdmin(AuditedAdmin):
    list_display = ["name", "address", "agent_port", "reachable", "rtt_ms", "last_checked_at"]
    search_fields = ["name", "address"]
    readonly_fields = ["reachable", "rtt_ms", "last_checked_at", "last_check_error"]


@admin.register(Member)
class MemberAdmin(AuditedAdmin):
    list_display = ["name", "mirror", "member_type", "host", "authorization"]
    list_filter = ["member_type", "authorization", "mirror"]
    search_fields = ["name", "x509_dn"]
    list_select_related = ["mirror", "host"]


@admin.register(PendingMember)
class PendingMemberAdmin(MemberAdmin):
    audit_name = "member"


@admin.register(PendingDNUpdate)
class PendingDNUpdateAdmin(AuditedAdmin):
    list_display = ["member", "new_dn", "state", "requested_at"]
    list_filter = ["state"]
    audit_name = "dn_update"


@admin.register(MirroredDatabase)
class MirroredDatabaseAdmin(AuditedAdmin):
    list_display = ["name", "mirror", "mount_required_at_startup"]
    list_filter = ["mirror"]
    audit_name = "database"

    def get_readonly_fields(self, request, obj=None):
        return ["name", "mirror"] if obj else []


@admin.register(DatabaseCopy)
class DatabaseCopyAdmin(AuditedAdmin):
    list_display = ["database", "member", "status", "failover_db"]
    list_filter = ["status"]
    audit_name = "database_copy"

from django.contrib import admin

from accounts.models import ApiToken, AuditEvent
from accounts.roles import ADMIN, has_role


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "hint", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["user", "name", "hint", "created_at", "last_used_at", "revoked_at"]

    def has_add_permission(self, request):
        return False  # tokens are made on the Tokens page, where the secret is shown once

    def has_view_permission(self, request, obj=None):
        return has_role(request.user, ADMIN)

    has_change_permission = has_module_permission = has_view_permission


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail is append-only, here as everywhere."""

    list_display = ["at", "actor_name", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_name", "object_repr", "action"]

    def has_view_permission(self, request, obj=None):
        return has_role(request.user, ADMIN)

    has_module_permission = has_view_permission

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

from django.contrib import admin

from accounts.roles import ADMIN, has_role
from tasks.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Jobs are started by operations, never typed in; the admin only shows them."""

    list_display = ["id", "kind", "target_repr", "state", "progress", "created_at"]
    list_filter = ["state", "kind"]

    def has_view_permission(self, request, obj=None):
        return has_role(request.user, ADMIN)

    has_module_permission = has_view_permission

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

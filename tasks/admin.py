from django.contrib import admin

from portal.admin import ReadOnlyAdmin
from tasks.models import Job


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    """Jobs are started by operations, never typed in; the admin only shows them."""

    list_display = ["id", "kind", "target_repr", "state", "progress", "created_at"]
    list_filter = ["state", "kind"]

from django.contrib import admin

from accounts.roles import ADMIN, has_role


class PortalAdminSite(admin.AdminSite):
    site_header = "Mirror Portal administration"
    site_title = "Mirror Portal"

    def has_permission(self, request):
        return has_role(request.user, ADMIN)


class NoWrites:
    """Admin pages and inlines that add, change and delete nothing."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(NoWrites, admin.ModelAdmin):
    """Admin pages that only show: list, detail, search and filters, for the admin role.

    Changes go through the service functions (pages, API, jobs), which validate, audit and, for
    mirrors, act on the members that are the truth about them; the admin writes nothing itself.
    """

    def get_readonly_fields(self, request, obj=None):
        # A form shows only editable fields; here the others (timestamps, observations) count too.
        hidden = {*(self.exclude or ()), *self.readonly_fields}
        computed = [
            field.name
            for field in self.model._meta.concrete_fields
            if not field.editable and not field.primary_key and field.name not in hidden
        ]
        return [*computed, *self.readonly_fields]

    def has_view_permission(self, request, obj=None):
        return has_role(request.user, ADMIN)

    has_module_permission = has_view_permission

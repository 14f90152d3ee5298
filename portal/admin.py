from django.contrib import admin

from accounts import audit
from accounts.roles import ADMIN, has_role


class PortalAdminSite(admin.AdminSite):
    site_header = "Mirror Portal administration"
    site_title = "Mirror Portal"

    def has_permission(self, request):
        return has_role(request.user, ADMIN)


class AuditedAdmin(admin.ModelAdmin):
    """Admin pages for portal models: open to the admin role, and every change audited the way
    services audit theirs (the model form already ran `full_clean`, hence every rule)."""

    audit_name = None

    def _allowed(self, request, obj=None):
        return has_role(request.user, ADMIN)

    has_view_permission = has_add_permission = _allowed
    has_change_permission = has_delete_permission = has_module_permission = _allowed

    def save_model(self, request, obj, form, change):
        name = self.audit_name or obj._meta.model_name
        before = audit.snapshot(type(obj).objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        action = f"{name}.update" if change else f"{name}.create"
        audit.record(request.user, action, obj, before=before, after=audit.snapshot(obj))

    def delete_model(self, request, obj):
        audit.record(
            request.user,
            f"{self.audit_name or obj._meta.model_name}.delete",
            obj,
            before=audit.snapshot(obj),
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

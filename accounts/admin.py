"""Users, groups, tokens and the audit trail in the admin.

Users are the one thing the admin still changes, and it changes them through `accounts.services`
like the API and the Users pages do: same checks, same audit events. Groups (the roles) are only
shown, with their users; a role is set on the user's page. Tokens are revoked through the
service; the audit trail is only shown.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from accounts import services
from accounts.models import ApiToken, AuditEvent
from accounts.roles import ADMIN, ROLES, has_role
from portal.admin import ReadOnlyAdmin

User = get_user_model()

# Roles are groups, set on the user's page (through the service); the groups themselves are fixed.
admin.site.unregister(Group)
admin.site.unregister(User)


def _role_held(user):
    held = {group.name for group in user.groups.all()}
    return next((role for role in reversed(ROLES) if role in held), None)


class UserAddForm(forms.ModelForm):
    role = forms.ChoiceField(choices=[(r, r) for r in ROLES])
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty for a user who logs in with tokens only.",
    )

    class Meta:
        model = User
        fields = ["username", "email"]

    def clean_username(self):
        username = self.cleaned_data["username"]
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("A user with that name already exists.", code="unique")
        return username

    def clean_password(self):
        password = self.cleaned_data["password"]
        if password:
            validate_password(password, User(username=self.cleaned_data.get("username", "")))
        return password


class UserChangeForm(forms.ModelForm):
    actor = None  # the admin making the change; UserAdmin.get_form sets it per request

    role = forms.ChoiceField(
        choices=[("", "(no role)")] + [(r, r) for r in ROLES],
        required=False,
        help_text="A role once given can be changed, not taken away; deactivate the user instead.",
    )
    new_password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current password.",
    )

    class Meta:
        model = User
        fields = ["email", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].initial = _role_held(self.instance)

    def clean_role(self):
        role = self.cleaned_data["role"]
        if not role and _role_held(self.instance):
            raise forms.ValidationError("Choose a role.", code="required")
        return role

    def clean_new_password(self):
        password = self.cleaned_data["new_password"]
        if password:
            validate_password(password, self.instance)
        return password

    def clean(self):
        # The service refuses to lock people out (one's own account, the last admin); asking it
        # here, before the save, shows that next to the field instead of failing the save.
        cleaned = super().clean()
        role = cleaned.get("role") if "role" in self.changed_data else None
        is_active = cleaned.get("is_active") if "is_active" in self.changed_data else None
        try:
            services.check_user_change(
                self.actor, self.instance, role=role or None, is_active=is_active
            )
        except ValidationError as exc:
            self.add_error(None, exc)
        return cleaned


class RoleFilter(admin.SimpleListFilter):
    title = "role"
    parameter_name = "role"

    def lookups(self, request, model_admin):
        return [(r, r) for r in ROLES]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(groups__name=self.value()).distinct()
        return queryset


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    """Every save and delete here is a call to `accounts.services`, which writes the audit event."""

    form = UserChangeForm
    add_form = UserAddForm
    list_display = ["username", "email", "role", "is_active", "is_superuser", "last_login"]
    list_filter = [RoleFilter, "is_active", "is_superuser"]
    search_fields = ["username", "email"]
    ordering = ["username"]

    def has_view_permission(self, request, obj=None):
        return has_role(request.user, ADMIN)

    has_module_permission = has_add_permission = has_change_permission = has_view_permission

    def has_delete_permission(self, request, obj=None):
        # Nobody deletes their own account (the service refuses it too).
        return has_role(request.user, ADMIN) and (obj is None or obj.pk != request.user.pk)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="role")
    def role(self, user):
        return ADMIN if user.is_superuser else _role_held(user)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["username", "email", "role", "password"]
        return ["username", "email", "role", "is_active", "new_password", "is_superuser"] + [
            "date_joined",
            "last_login",
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["username", "is_superuser", "date_joined", "last_login"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        form = super().get_form(request, obj, **kwargs)  # a new class for this request
        form.actor = request.user
        return form

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if not change:
            user = services.create_user(
                request.user,
                username=data["username"],
                password=data["password"] or None,
                role=data["role"],
                email=data.get("email", ""),
            )
            obj.pk, obj._state.adding, obj._state.db = user.pk, False, user._state.db
            return
        # The form has already copied its values onto `obj`: the service gets the stored user,
        # so the event's "before" is what was stored.
        stored = User.objects.get(pk=obj.pk)
        changes = {f: data[f] for f in ("email", "is_active") if f in form.changed_data}
        if "role" in form.changed_data and data["role"]:
            changes["role"] = data["role"]
        if changes:
            services.update_user(request.user, stored, **changes)
        if data.get("new_password"):
            services.set_password(request.user, stored, data["new_password"])

    def save_related(self, request, form, formsets, change):
        pass  # the service has set the groups (the role); the forms have no other relations

    def delete_model(self, request, obj):
        services.delete_user(request.user, obj)

    def delete_queryset(self, request, queryset):
        for user in queryset:  # never holds the admin themselves: see has_delete_permission
            services.delete_user(request.user, user)


@admin.register(Group)
class GroupAdmin(ReadOnlyAdmin):
    """Roles are groups: shown here with their users, so who holds which role is visible;
    a role is given on the user's page (or the portal's Users pages), through the service."""

    list_display = ["name", "user_count", "usernames"]
    fields = ["name", "usernames"]
    readonly_fields = ["usernames"]
    search_fields = ["name", "user__username"]
    ordering = ["name"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("user_set")

    @admin.display(description="users")
    def user_count(self, group):
        return len(group.user_set.all())

    @admin.display(description="user names")
    def usernames(self, group):
        return ", ".join(sorted(user.username for user in group.user_set.all())) or "—"


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are made on the Tokens page, where the secret is shown once; here they can be
    revoked (through the service, audited), never edited or deleted."""

    list_display = ["name", "user", "hint", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "user__username", "hint"]
    list_select_related = ["user"]
    exclude = ["key_hash"]
    actions = ["revoke"]

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            services.revoke_token(request.user, token)
        messages.success(request, f"Revoked {len(queryset)} token(s).")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail is append-only, here as everywhere."""

    list_display = ["at", "actor_name", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_name", "object_repr", "action"]

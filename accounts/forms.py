import django_filters
from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import SetPasswordForm

from accounts import services
from accounts.models import AuditEvent
from accounts.roles import NO_ROLE, ROLES
from portal.filters import FilterSet, TextFilter

ROLE_CHOICES = [(role, role.capitalize()) for role in ROLES]
# a portal-wide role may be none: such a user sees only the mirrors they hold a role on
PORTAL_ROLE_CHOICES = ROLE_CHOICES + [(NO_ROLE, "None: single mirrors only")]
User = get_user_model()
# Short option labels keep the select narrow on a phone; what each role may do is the help text.
ROLES_IN_WORDS = (
    "Viewers read everything; operators also run operations; "
    "admins also change configuration and manage users. "
    "With none, they see only the mirrors whose access page lists them."
)


def _password_rules() -> str:
    """What the configured validators ask of a password, in their own plain words."""
    return " ".join(password_validation.password_validators_help_texts())


class TokenForm(forms.Form):
    name = forms.CharField(
        label="Token name",
        max_length=100,
        help_text="What the token is for, e.g. “nightly backup script”.",
    )


def _recorded(field: str):
    """Choices for a filter: the values the audit trail actually holds, read per request."""

    def choices():
        values = AuditEvent.objects.order_by(field).values_list(field, flat=True).distinct()
        return [(value, value) for value in values]

    return choices


class DateInput(forms.DateInput):
    input_type = "date"


class AuditFilter(FilterSet):
    actor = TextFilter(field_name="actor_name", lookup_expr="iexact", label="Actor (user name)")
    action = django_filters.ChoiceFilter(choices=_recorded("action"), empty_label="Any")
    object_type = django_filters.ChoiceFilter(
        choices=_recorded("object_type"), empty_label="Any", label="Object type"
    )
    date_from = django_filters.DateFilter(
        field_name="at", lookup_expr="date__gte", label="From (date)", widget=DateInput
    )
    date_to = django_filters.DateFilter(
        field_name="at", lookup_expr="date__lte", label="To (date)", widget=DateInput
    )

    class Meta:
        model = AuditEvent
        fields = []


# --- Users (admin role) -----------------------------------------------------------------------
# These forms only parse what was typed; `accounts.services` decides whether the change is
# allowed (unique name, strong password, the last admin) and the view shows its refusal here.
class UserCreateForm(forms.Form):
    username = forms.CharField(
        label="User name",
        help_text="What they type to log in: letters, digits and @ . + - _ only.",
    )
    email = forms.EmailField(
        label="Email address",
        required=False,
        help_text="Optional, for your records: the portal sends no email.",
    )
    role = forms.ChoiceField(
        label="Role",
        choices=PORTAL_ROLE_CHOICES,
        initial="viewer",
        help_text=ROLES_IN_WORDS,
    )
    password = forms.CharField(
        label="Initial password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to get a one-time link instead, with which they choose their own.",
    )


class UserRoleForm(forms.Form):
    role = forms.ChoiceField(
        label="Role",
        choices=PORTAL_ROLE_CHOICES,
        help_text="Applies from their next page or API call.",
    )

    def __init__(self, *args, user, **kwargs):
        kwargs.setdefault("initial", {"role": services.held_role(user) or NO_ROLE})
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_role(self):
        if self.user.is_superuser:
            raise forms.ValidationError(
                "A superuser is always an admin, whatever role is set here.", code="superuser"
            )
        return self.cleaned_data["role"]


class ChoosePasswordForm(SetPasswordForm):
    """The page a set-password link opens. Saving goes through the service, so it is audited
    (as the user's own change)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["new_password1"].label = "New password"
        self.fields["new_password1"].help_text = _password_rules()
        self.fields["new_password2"].label = "New password again"
        self.fields["new_password2"].help_text = "Type it once more, to catch a typing mistake."

    def save(self, commit=True):
        return services.set_password(self.user, self.user, self.cleaned_data["new_password1"])


# --- Roles on single mirrors (docs/access.md) -------------------------------------------------
class MirrorRoleForm(forms.Form):
    username = forms.CharField(label="User name", max_length=150)
    role = forms.ChoiceField(
        label="Role on this mirror",
        choices=ROLE_CHOICES + [(NO_ROLE, "None (take it away)")],
        initial="viewer",
        help_text="Adds to their portal-wide role; it never lowers it.",
    )

    def clean_username(self):
        name = self.cleaned_data["username"].strip()
        user = User.objects.filter(username__iexact=name).first()
        if user is None:
            raise forms.ValidationError(f"No user named {name}.", code="unknown_user")
        return user

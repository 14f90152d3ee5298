"""Users, roles and API tokens. Every change is audited in its own transaction."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import audit
from accounts.models import ApiToken, hash_token, new_token_secret
from accounts.roles import ADMIN, ROLES, has_role
from members.rules import about, field_error

User = get_user_model()


def _user_snapshot(user):
    data = audit.snapshot(user, exclude=["groups", "user_permissions", "last_login"])
    data["role"] = ",".join(
        sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    )
    return data


@transaction.atomic
def create_user(actor, *, username: str, password: str | None, role: str, email: str = ""):
    if role not in ROLES:
        raise field_error("role", f"Role must be one of {', '.join(ROLES)}.", "invalid_role")
    if User.objects.filter(username__iexact=username).exists():
        raise field_error("username", "A user with that name already exists.", "unique")
    user = User(username=username, email=email)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    user.groups.set([Group.objects.get_or_create(name=role)[0]])
    audit.record(actor, "user.create", user, after=_user_snapshot(user))
    return user


@transaction.atomic
def update_user(
    actor, user, *, role: str | None = None, is_active: bool | None = None, email: str | None = None
):
    before = _user_snapshot(user)
    if role is not None:
        if role not in ROLES:
            raise field_error("role", f"Role must be one of {', '.join(ROLES)}.", "invalid_role")
        user.groups.remove(*Group.objects.filter(name__in=ROLES))
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    if is_active is not None:
        user.is_active = is_active
    if email is not None:
        user.email = email
    user.full_clean(exclude=["password"])
    user.save()
    audit.record(actor, "user.update", user, before=before, after=_user_snapshot(user))
    return user


@transaction.atomic
def set_password(actor, user, password: str):
    """Give `user` a new password. The event says that it changed, never what to."""
    with about("password"):
        validate_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])
    audit.record(actor, "user.set_password", user)
    return user


@transaction.atomic
def delete_user(actor, user):
    if actor is not None and actor.pk == user.pk:
        raise ValidationError("You cannot delete your own account.", code="self_delete")
    before = _user_snapshot(user)
    audit.record(actor, "user.delete", user, before=before)
    user.delete()


@transaction.atomic
def create_token(user, *, name: str) -> tuple[ApiToken, str]:
    """Create a token for `user`; the secret is returned once and never stored."""
    name = (name or "").strip()
    if not name:
        raise field_error("name", "A token needs a name.", "required")
    secret = new_token_secret()
    token = ApiToken.objects.create(
        user=user, name=name[:100], key_hash=hash_token(secret), hint=secret[:10]
    )
    audit.record(user, "token.create", token, after=audit.snapshot(token))
    return token, secret


@transaction.atomic
def revoke_token(actor, token: ApiToken) -> ApiToken:
    if token.user_id != actor.pk and not has_role(actor, ADMIN):
        raise PermissionDenied("Only the token's owner can revoke it.")
    if token.revoked_at is None:
        before = audit.snapshot(token)
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(actor, "token.revoke", token, before=before, after=audit.snapshot(token))
    return token

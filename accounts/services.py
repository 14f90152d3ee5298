"""Users, roles and API tokens. Every change is audited in its own transaction.

The portal's pages, the API and the admin site all change users through these functions, so the
same rules hold everywhere: passwords meet the validators, nobody deactivates or deletes their
own account, and the last active admin is never deactivated, demoted or deleted.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import audit
from accounts.models import ApiToken, MirrorRole, hash_token, new_token_secret
from accounts.roles import ADMIN, NO_ROLE, ROLES, has_role
from accounts.signals import roles_changed
from members.rules import about, field_error

User = get_user_model()


def _user_snapshot(user):
    data = audit.snapshot(user, exclude=["groups", "user_permissions", "last_login"])
    data["role"] = ",".join(
        sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    )
    return data


def held_role(user) -> str | None:
    """The role a user is given, active or not: `admin` for a superuser, otherwise the strongest
    role group they are in (read from `user.groups.all()`, so a prefetch serves a whole list)."""
    if user.is_superuser:
        return ADMIN
    held = {group.name for group in user.groups.all()}
    return next((role for role in reversed(ROLES) if role in held), None)


def _is_active_admin(user) -> bool:
    return user.is_active and (user.is_superuser or user.groups.filter(name=ADMIN).exists())


def _keep_an_active_admin(user, field: str | None):
    """Refuse to take away `user`, the last active admin (deactivated, demoted or deleted)."""
    # Two admins removing each other at once must not both see the other one still there: every
    # such check waits for the one before it (PostgreSQL; SQLite runs one writer at a time anyway).
    list(Group.objects.select_for_update().filter(name=ADMIN))
    others = (
        User.objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name=ADMIN))
        .exclude(pk=user.pk)
    )
    if others.exists():
        return
    message = f"{user.get_username()} is the last active admin; make someone else an admin first."
    if field is None:
        raise ValidationError(message, code="last_admin")
    raise field_error(field, message, "last_admin")


@transaction.atomic
def check_user_change(actor, user, *, role: str | None = None, is_active: bool | None = None):
    """Refuse a change that would lock people out: deactivating one's own account, or leaving
    no active admin (deactivating or demoting the last one).

    `update_user` calls it; a form may call it too, to show the refusal next to its field.
    """
    if is_active is False and actor is not None and actor.pk == user.pk:
        raise field_error("is_active", "You cannot deactivate your own account.", "self_deactivate")
    if not _is_active_admin(user):
        return
    stays_active = user.is_active if is_active is None else is_active
    stays_admin = user.is_superuser or role in (None, ADMIN)
    if not (stays_active and stays_admin):
        _keep_an_active_admin(user, "role" if stays_active else "is_active")


def _check_role(role: str) -> None:
    if role not in (*ROLES, NO_ROLE):
        choices = ", ".join([*ROLES, NO_ROLE])
        raise field_error("role", f"Role must be one of {choices}.", "invalid_role")


def _give_role(user, role: str) -> None:
    """Make `role` the user's only portal-wide role group (none for NO_ROLE)."""
    user.groups.remove(*Group.objects.filter(name__in=ROLES))
    if role != NO_ROLE:
        user.groups.add(Group.objects.get_or_create(name=role)[0])


def _tell_sockets(user) -> None:
    """Once the change is committed, the user's open monitor sockets look again at what they
    may see (monitor/consumers.py)."""
    user_id = user.pk  # read now: a deleted user's pk is None by the time of the commit
    transaction.on_commit(lambda: roles_changed.send(sender=User, user_id=user_id))


@transaction.atomic
def create_user(actor, *, username: str, password: str | None, role: str, email: str = ""):
    """`role` is the portal-wide one; NO_ROLE for someone who will see single mirrors only."""
    _check_role(role)
    if User.objects.filter(username__iexact=username).exists():
        raise field_error("username", "A user with that name already exists.", "unique")
    user = User(username=username, email=email)
    if password:
        with about("password"):
            validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    _give_role(user, role)
    audit.record(actor, "user.create", user, after=_user_snapshot(user))
    return user


@transaction.atomic
def update_user(
    actor, user, *, role: str | None = None, is_active: bool | None = None, email: str | None = None
):
    if role is not None:
        _check_role(role)
    check_user_change(actor, user, role=role, is_active=is_active)
    before = _user_snapshot(user)
    if role is not None:
        _give_role(user, role)
    if is_active is not None:
        user.is_active = is_active
    if email is not None:
        user.email = email
    user.full_clean(exclude=["password"])
    user.save()
    audit.record(actor, "user.update", user, before=before, after=_user_snapshot(user))
    _tell_sockets(user)
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
def invite_user(actor, user) -> str:
    """A token for a one-time set-password link, for an active user who has no password yet.

    It is Django's password-reset token: nothing is stored, it expires after
    PASSWORD_RESET_TIMEOUT, and it stops working once a password is set (the token covers the
    password hash). The event records that a link was made, never the token.
    """
    if not user.is_active:
        raise ValidationError(
            f"{user.get_username()} is deactivated; reactivate them first.", code="inactive"
        )
    if user.has_usable_password():
        raise ValidationError(f"{user.get_username()} already has a password.", code="has_password")
    token = default_token_generator.make_token(user)
    audit.record(actor, "user.invite", user)
    return token


@transaction.atomic
def delete_user(actor, user):
    if actor is not None and actor.pk == user.pk:
        raise ValidationError("You cannot delete your own account.", code="self_delete")
    if _is_active_admin(user):
        _keep_an_active_admin(user, None)
    before = _user_snapshot(user)
    audit.record(actor, "user.delete", user, before=before)
    _tell_sockets(user)  # their open sockets look again, as nobody: closed or emptied
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


def _mirror_role_snapshot(user, mirror, role: str | None) -> dict:
    return {"user": user.pk, "username": user.get_username(), "mirror": mirror.pk, "role": role}


@transaction.atomic
def set_mirror_role(actor, user, mirror, role: str) -> MirrorRole | None:
    """Give `user` `role` on `mirror` alone (NO_ROLE: take away the role they held there).

    Who may do it is the caller's check: an admin portal-wide or of that mirror. A role on a
    mirror adds to the portal-wide one and never lowers it (docs/access.md)."""
    _check_role(role)
    held = MirrorRole.objects.select_for_update().filter(user=user, mirror=mirror).first()
    before = _mirror_role_snapshot(user, mirror, held.role) if held else None
    if role == NO_ROLE:
        if held is None:
            return None
        held.delete()
        audit.record(actor, "mirror_role.remove", user, before=before)
        _tell_sockets(user)
        return None
    if held is not None and held.role == role:
        return held
    held = held or MirrorRole(user=user, mirror=mirror)
    held.role = role
    held.save()
    action = "mirror_role.change" if before else "mirror_role.add"
    audit.record(
        actor, action, user, before=before, after=_mirror_role_snapshot(user, mirror, role)
    )
    _tell_sockets(user)
    return held

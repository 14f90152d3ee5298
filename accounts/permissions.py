from rest_framework import exceptions, permissions
from rest_framework.exceptions import ErrorDetail, ValidationError

from accounts.roles import (
    ADMIN,
    OPERATOR,
    VIEWER,
    has_role,
    has_role_anywhere,
    has_role_on,
    scope,
)


class RolePermission(permissions.BasePermission):
    """Reads need viewer, changes need admin; a view may name other roles per action.

    A view sets `action_roles = {"check": OPERATOR}` to let operators run an operation, or
    `required_role` to set one role for everything it does. A view of a mirror's rows sets
    `mirror_field` (the path from a row to its mirror) and is a `MirrorScoped` view: a role on
    one mirror lets the caller in, lists show only the mirrors they see, a row of another mirror
    is not found (404), and acting on a row needs the role on the row's mirror (403). Other views
    need the role portal-wide, except `any_mirror` ones (the caller's own tokens), which a role on
    any mirror opens. `portal_wide_actions` of a mirror view (creating a mirror) need the role
    portal-wide (docs/access.md).
    """

    message = "Your role does not allow this."

    def has_permission(self, request, view):
        needed = required_role(request, view)
        if _opened_by_mirror_roles(view):
            return has_role_anywhere(request.user, needed)
        return has_role(request.user, needed)

    def has_object_permission(self, request, view, obj):
        field = getattr(view, "mirror_field", None)
        if field is None:
            return True
        return has_role_on(request.user, mirror_id_of(obj, field), required_role(request, view))


def _opened_by_mirror_roles(view) -> bool:
    if getattr(view, "any_mirror", False):
        return True
    if getattr(view, "mirror_field", None) is None:
        return False
    return getattr(view, "action", None) not in getattr(view, "portal_wide_actions", ())


def required_role(request, view) -> str:
    action = getattr(view, "action", None)
    per_action = getattr(view, "action_roles", {})
    if action in per_action:
        return per_action[action]
    if hasattr(view, "required_role"):
        return view.required_role
    return VIEWER if request.method in permissions.SAFE_METHODS else ADMIN


def mirror_id_of(row, field: str) -> int | None:
    """The id of the mirror a row belongs to, following `field` ("member__mirror", "pk")."""
    *hops, last = field.split("__")
    for hop in hops:
        row = getattr(row, hop)
    return row.pk if last == "pk" else getattr(row, f"{last}_id")


class MirrorScoped:
    """A viewset mixin: its queryset holds only the rows of mirrors the caller sees."""

    mirror_field = "mirror"
    list_role = VIEWER  # the role on a mirror that shows its rows

    def get_queryset(self):
        return scope(super().get_queryset(), self.request.user, self.mirror_field, self.list_role)


def no_such_mirror(pk) -> ValidationError:
    """What DRF answers for a mirror id that does not exist, code included: a body naming a
    mirror the caller may not see gets the same, so ids do not tell one from the other."""
    message = f'Invalid pk "{pk}" - object does not exist.'
    return ValidationError({"mirror": [ErrorDetail(message, code="does_not_exist")]})


def check_body_mirror(user, mirror, needed: str, *, seen_with: str = VIEWER) -> None:
    """A mirror named in a request's body: not found (400) unless the user holds `seen_with`
    on it (what shows it to them in that endpoint's lists), 403 unless they hold `needed`."""
    if not has_role_on(user, mirror.pk, seen_with):
        raise no_such_mirror(mirror.pk)
    if not has_role_on(user, mirror.pk, needed):
        raise exceptions.PermissionDenied()


class AnyMirrorRole(permissions.BasePermission):
    """The API's schema and docs: anyone who sees at least one mirror."""

    message = RolePermission.message

    def has_permission(self, request, view):
        return has_role_anywhere(request.user, VIEWER)


__all__ = ["RolePermission", "MirrorScoped", "AnyMirrorRole", "required_role", "check_body_mirror"]
__all__ += ["VIEWER", "OPERATOR", "ADMIN"]

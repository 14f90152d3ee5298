from rest_framework import permissions

from accounts.roles import ADMIN, OPERATOR, VIEWER, has_role


class RolePermission(permissions.BasePermission):
    """Reads need viewer, changes need admin; a view may name other roles per action.

    A view sets `action_roles = {"check": OPERATOR}` to let operators run an operation, or
    `required_role` to set one role for everything it does.
    """

    message = "Your role does not allow this."

    def has_permission(self, request, view):
        return has_role(request.user, required_role(request, view))


def required_role(request, view) -> str:
    action = getattr(view, "action", None)
    per_action = getattr(view, "action_roles", {})
    if action in per_action:
        return per_action[action]
    if hasattr(view, "required_role"):
        return view.required_role
    return VIEWER if request.method in permissions.SAFE_METHODS else ADMIN


__all__ = ["RolePermission", "required_role", "VIEWER", "OPERATOR", "ADMIN"]

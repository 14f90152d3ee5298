"""Role checks for page views.

Anonymous visitors are sent to the login page; a signed-in user whose role is too weak (or who
has no role at all) gets the 403 page. The API enforces the same roles in
`accounts.permissions.RolePermission`; both read `accounts.roles`.
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

from accounts.roles import ADMIN, OPERATOR, VIEWER, has_role

DENIED = "Your role does not allow this."


def role_required(role: str):
    """Decorate a page view so only users holding `role` (or a stronger one) reach it."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                raise PermissionDenied(DENIED)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


viewer_required = role_required(VIEWER)
operator_required = role_required(OPERATOR)
admin_required = role_required(ADMIN)

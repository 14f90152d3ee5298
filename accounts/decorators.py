"""Role checks for page views.

Anonymous visitors are sent to the login page; a signed-in user whose role is too weak (or who
has no role at all) gets the 403 page. A page of one mirror or of one row of a mirror answers 404
to someone who holds no role on that mirror, as if it did not exist (members/access.py). The API
enforces the same roles in `accounts.permissions.RolePermission`; both read `accounts.roles`
(docs/access.md).
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.roles import ADMIN, OPERATOR, VIEWER, allows, has_role, has_role_anywhere, role_on

DENIED = "Your role does not allow this."
NOT_FOUND = "No such mirror."


def role_required(role: str):
    """Decorate a page view so only users holding `role` (or a stronger one) portal-wide
    reach it."""

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


def any_mirror_required(view):
    """Decorate a page that lists rows of many mirrors (the fleet, jobs, the timeline, alerts):
    anyone who sees at least one mirror reaches it, and the page shows only what they may see."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not has_role_anywhere(request.user, VIEWER):
            raise PermissionDenied(DENIED)
        return view(request, *args, **kwargs)

    return wrapped


def check_mirror_role(request, mirror_id: int | None, needed: str) -> str:
    """The user's role on the mirror; 404 when they hold none there, 403 when it is too weak
    (or they hold no role anywhere: the 403 page tells them to ask for one). A row of no mirror
    (`None`: a host's job) needs a portal-wide role. The role is kept as `request.mirror_role`
    for the page's buttons."""
    role = role_on(request.user, mirror_id)
    if role is None and not has_role_anywhere(request.user, VIEWER):
        raise PermissionDenied(DENIED)
    if role is None:
        raise Http404(NOT_FOUND)
    if not allows(role, needed):
        raise PermissionDenied(DENIED)
    request.mirror_role = role
    return role


def may(request, mirror_id: int | None, needed: str) -> bool:
    """For a page's buttons: whether the user holds `needed` on the mirror."""
    return allows(role_on(request.user, mirror_id), needed)


viewer_required = role_required(VIEWER)
operator_required = role_required(OPERATOR)
admin_required = role_required(ADMIN)

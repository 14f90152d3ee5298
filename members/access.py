"""Pages of one mirror: its URL names it, and the visitor's role on it decides.

Someone who holds no role on the mirror gets 404, as if it did not exist, so mirror names do not
leak; someone who sees it but whose role is too weak gets 403 (accounts/decorators.py,
docs/access.md).
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import Http404

from accounts.decorators import NOT_FOUND, check_mirror_role
from accounts.roles import ADMIN, OPERATOR, VIEWER
from members.models import Mirror


def mirror_role_required(needed: str):
    """Decorate a page view whose URL names a mirror (`name`)."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            name = kwargs["name"].upper()
            mirror_id = Mirror.objects.filter(name=name).values_list("pk", flat=True).first()
            if mirror_id is None:
                raise Http404(NOT_FOUND)
            check_mirror_role(request, mirror_id, needed)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


mirror_viewer_required = mirror_role_required(VIEWER)
mirror_operator_required = mirror_role_required(OPERATOR)
mirror_admin_required = mirror_role_required(ADMIN)

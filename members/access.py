"""Pages of one mirror: its URL names it, and the visitor's role on it decides.

Someone who holds no role on the mirror gets 404, as if it did not exist, so mirror names do not
leak; someone who sees it but whose role is too weak gets 403 (accounts/decorators.py,
docs/access.md).
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.decorators import DENIED, NOT_FOUND, check_mirror_role
from accounts.roles import ADMIN, OPERATOR, VIEWER, has_role, has_role_on, role_on, weaker
from members.models import Member, Mirror
from members.operations import PORTAL_WIDE_KINDS, ROLE_TO_RUN, WHOLE_INSTANCE_KINDS


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


def check_may_run(actor, kind: str, mirror_id: int | None, member=None) -> None:
    """Refuse (PermissionDenied) a job the actor may not run: the kind's role on the job's
    mirror, portal-wide for kinds of no single mirror, and for a kind acting on the member's
    whole instance the role on every other mirror that instance is a member of. Called when a
    job starts and when it is retried (a retry runs the same request again). `actor` None is
    the portal itself (a management command)."""
    if actor is None or isinstance(actor, str):
        return
    needed = ROLE_TO_RUN.get(kind, ADMIN)
    if kind in PORTAL_WIDE_KINDS:
        allowed = has_role(actor, needed)
    else:
        allowed = has_role_on(actor, mirror_id, needed)
    if not allowed:
        raise PermissionDenied(DENIED)
    if member is not None and kind in WHOLE_INSTANCE_KINDS:
        check_whole_instance(actor, member, needed)


def check_whole_instance(user, member, needed: str) -> None:
    """Refuse (PermissionDenied) what touches the member's whole instance (it stops, restarts,
    or its application credentials) unless the user holds `needed` on every mirror the instance
    is a member of: a reporting async may serve several (guide §2)."""
    others = Member.objects.filter(host_id=member.host_id, name=member.name).exclude(
        mirror_id=member.mirror_id
    )
    if any(not has_role_on(user, m, needed) for m in others.values_list("mirror_id", flat=True)):
        raise PermissionDenied(
            f"{member.name}'s instance is a member of other mirrors too; what acts on the whole "
            f"instance needs the {needed} role on each of them."
        )


def shown_mirror_name(user, mirror_id: int, name: str) -> str:
    """A mirror's name as the user may read it: "another mirror" when they hold no role on it
    (a refusal or a label must not tell them what other teams run)."""
    if user is None or isinstance(user, str) or has_role_on(user, mirror_id, VIEWER):
        return name
    return "another mirror"


def roles_on_whole_instances(user, mirror, members) -> None:
    """Set `member.instance_role` on each of `members` (of `mirror`): the user's weakest role
    across every mirror the member's instance is a member of, which is what the buttons acting
    on the whole instance ask for (check_whole_instance)."""
    own = role_on(user, mirror.pk)
    for member in members:
        member.instance_role = own
    if has_role(user, ADMIN) or not members:
        return
    by_instance = {(m.host_id, m.name): m for m in members}
    others = (
        Member.objects.filter(name__in={m.name for m in members})
        .exclude(mirror_id=mirror.pk)
        .values_list("host_id", "name", "mirror_id")
    )
    for host_id, name, mirror_id in others:
        member = by_instance.get((host_id, name))
        if member is not None:
            member.instance_role = weaker(member.instance_role, role_on(user, mirror_id))

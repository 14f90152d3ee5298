"""A mirror's access page: who holds a role on this mirror alone, and the form its admins use
to give, change and take such roles (docs/access.md). Portal-wide roles are managed on the
users pages (accounts/views.py)."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from accounts.forms import MirrorRoleForm
from accounts.models import MirrorRole
from accounts.roles import NO_ROLE
from accounts.services import set_mirror_role
from members.access import mirror_admin_required
from members.models import Mirror
from members.pages import posted


@mirror_admin_required
@require_http_methods(["GET", "POST"])
def mirror_access(request, name):
    mirror = get_object_or_404(Mirror, name=name.upper())
    form = MirrorRoleForm(data=posted(request))
    if request.method == "POST" and form.is_valid():
        user, role = form.cleaned_data["username"], form.cleaned_data["role"]
        set_mirror_role(request.user, user, mirror, role)
        if role == NO_ROLE:
            messages.info(request, f"{user.get_username()} holds no role on {mirror.name} now.")
        else:
            messages.success(request, f"{user.get_username()} is {role} of {mirror.name}.")
        return redirect("mirror-access", name=mirror.name)
    context = {
        "mirror": mirror,
        "form": form,
        "roles": MirrorRole.objects.filter(mirror=mirror).select_related("user"),
        "choices": form.fields["role"].choices,
    }
    return render(
        request, "members/mirror_access.html", context, status=400 if form.errors else 200
    )

from accounts.roles import VIEWER, has_role_anywhere, role_of


def role(request):
    user = getattr(request, "user", None)
    return {
        "portal_role": role_of(user),
        # someone with roles on single mirrors only still gets the mirrors' pages
        "sees_mirrors": bool(user) and has_role_anywhere(user, VIEWER),
        # the visitor's role on the mirror the page shows (accounts/decorators.py)
        "mirror_role": getattr(request, "mirror_role", None),
    }

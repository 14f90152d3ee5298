"""The three roles and what each may do.

viewer reads everything; operator also runs operations (jobs); admin also changes configuration,
authorizes members and manages users. Roles are Django groups, so the admin site can assign them;
a superuser is always an admin.
"""

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = [VIEWER, OPERATOR, ADMIN]
_RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}


def role_of(user) -> str | None:
    """The strongest role a user holds, or None (anonymous, inactive, or no role at all)."""
    if not user or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    cached = getattr(user, "_portal_role", ...)
    if cached is not ...:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    held = [r for r in ROLES if r in names]
    role = max(held, key=_RANK.__getitem__) if held else None
    user._portal_role = role
    return role


def has_role(user, needed: str) -> bool:
    role = role_of(user)
    return role is not None and _RANK[role] >= _RANK[needed]

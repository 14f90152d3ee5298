"""The three roles and what each may do, portal-wide and on one mirror.

viewer reads; operator also runs operations (jobs); admin also changes configuration, authorizes
members and manages users. Portal-wide roles are Django groups, so the admin site can assign them;
a superuser is always an admin. A role on one mirror (`accounts.models.MirrorRole`) adds to the
portal-wide one: on that mirror a user holds the stronger of the two. What only the portal as a
whole has (hosts, instances, users, the audit trail, metrics) needs a portal-wide role
(docs/access.md).
"""

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = [VIEWER, OPERATOR, ADMIN]
# Said when a user gets no portal-wide role: they see only the mirrors they hold a role on.
NO_ROLE = "none"
PORTAL_ROLES = [*ROLES, NO_ROLE]  # what a user's portal-wide role may be set to
_RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}


def _stronger(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if _RANK[a] >= _RANK[b] else b


def weaker(a: str | None, b: str | None) -> str | None:
    """The weaker of two roles; no role is weaker than any."""
    if a is None or b is None:
        return None
    return a if _RANK[a] <= _RANK[b] else b


def allows(role: str | None, needed: str) -> bool:
    return role is not None and _RANK[role] >= _RANK[needed]


def _signed_in(user) -> bool:
    return bool(user) and user.is_authenticated and user.is_active


def role_of(user) -> str | None:
    """The strongest portal-wide role a user holds, or None (anonymous, inactive, or no
    portal-wide role)."""
    if not _signed_in(user):
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
    """Whether the user holds `needed` (or stronger) portal-wide."""
    return allows(role_of(user), needed)


def mirror_roles_of(user) -> dict[int, str]:
    """{mirror id: role} of the roles the user holds on single mirrors (read once per request)."""
    if not _signed_in(user):
        return {}
    cached = getattr(user, "_mirror_roles", None)
    if cached is None:
        cached = dict(user.mirror_roles.values_list("mirror_id", "role"))
        user._mirror_roles = cached
    return cached


def role_on(user, mirror_id: int | None) -> str | None:
    """The user's role on one mirror: the stronger of their portal-wide role and their role on
    that mirror. A row that belongs to no mirror (`None`) needs the portal-wide role."""
    portal = role_of(user)
    if mirror_id is None or portal == ADMIN:  # nothing is stronger: no need to read more
        return portal
    return _stronger(portal, mirror_roles_of(user).get(mirror_id))


def has_role_on(user, mirror_id: int | None, needed: str) -> bool:
    return allows(role_on(user, mirror_id), needed)


def has_role_anywhere(user, needed: str) -> bool:
    """Whether the user holds `needed` portal-wide or on at least one mirror."""
    return has_role(user, needed) or any(
        allows(role, needed) for role in mirror_roles_of(user).values()
    )


def mirrors_allowed(user, needed: str = VIEWER) -> frozenset[int] | None:
    """The ids of the mirrors where the user holds `needed`, or None when that is every mirror
    (they hold it portal-wide)."""
    if has_role(user, needed):
        return None
    return frozenset(m for m, role in mirror_roles_of(user).items() if allows(role, needed))


def scope(queryset, user, field: str = "mirror", needed: str = VIEWER):
    """`queryset` narrowed to the rows of mirrors where the user holds `needed`; `field` is the
    path from a row to its mirror ("mirror", "member__mirror", or "pk" for mirrors). Rows of no
    mirror stay only for portal-wide roles."""
    allowed = mirrors_allowed(user, needed)
    if allowed is None:
        return queryset
    return queryset.filter(**{f"{field}__in": allowed})

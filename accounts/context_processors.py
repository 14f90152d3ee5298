from accounts.roles import role_of


def role(request):
    return {"portal_role": role_of(getattr(request, "user", None))}

"""Shared fixtures: the anonymous / viewer / operator / admin quartet, API clients for each,
and the rule that service-backed tests never skip on CI."""

import os
import secrets

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from engine.wire.admin_token import TOKEN_ENV

ON_CI = os.environ.get("CI", "").lower() == "true"
ROLES = ("viewer", "operator", "admin")

# The engine instances the tests start, and the clients they open, share one admin token
# (engine/member/admin_auth.py); tests of the token itself start instances without it.
os.environ.setdefault(TOKEN_ENV, secrets.token_urlsafe(16))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/tests/api/" in str(item.fspath):
            item.add_marker(pytest.mark.api)


def require(condition: bool, reason: str) -> None:
    """Skip locally when a real service is missing; on CI (CI=true) that is a failure."""
    if condition:
        return
    if ON_CI:
        pytest.fail(f"{reason} (required on CI)")
    pytest.skip(reason)


def make_user(username: str, role: str | None) -> User:
    user = User.objects.create_user(username=username, password="correct horse battery")
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def viewer(db):
    return make_user("vera-viewer", "viewer")


@pytest.fixture
def operator(db):
    return make_user("otto-operator", "operator")


@pytest.fixture
def admin_user(db):
    return make_user("ada-admin", "admin")


@pytest.fixture
def users(viewer, operator, admin_user):
    return {"viewer": viewer, "operator": operator, "admin": admin_user}


def api_client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def api(admin_user):
    """An API client logged in as an admin."""
    return api_client_for(admin_user)

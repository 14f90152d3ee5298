"""A small world for page tests: one mirror with an authorized and a pending member, a pending
DN update, a database with a copy, a host and a job — and a Django test client per identity."""

from types import SimpleNamespace

import pytest
from django.test import Client

from tasks.services import start_job
from tests import factories
from tests.conftest import make_user

IDENTITIES = ("anonymous", "norole", "viewer", "operator", "admin")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Every test makes four users; the production hasher would spend seconds on them.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def norole(db):
    return make_user("nils-norole", None)


@pytest.fixture
def people(norole, viewer, operator, admin_user):
    return {
        "anonymous": None,
        "norole": norole,
        "viewer": viewer,
        "operator": operator,
        "admin": admin_user,
    }


@pytest.fixture
def client_as(people):
    def build(identity: str) -> Client:
        client = Client()
        if people[identity] is not None:
            client.force_login(people[identity])
        return client

    return build


@pytest.fixture
def world(admin_user):
    mirror = factories.mirror(name="ALPHA")
    member = factories.member(mirror, name="NODEA")
    # A TLS mirror's second member waits for authorization.
    pending = factories.member(mirror, name="NODEB", x509_dn="CN=NODEB,O=Example")
    database = factories.database(mirror, name="SALES")
    factories.copy(database, member, status="Normal")
    dn_update = factories.dn_update(member, "CN=nodea-renewed,O=Example")
    job = start_job(admin_user, "check_host", member.host)
    return SimpleNamespace(
        mirror=mirror,
        member=member,
        pending=pending,
        database=database,
        dn_update=dn_update,
        host=member.host,
        job=job,
    )

"""Each list endpoint costs the same number of queries for 2 rows as for 20: no N+1."""

import itertools

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts import audit
from accounts.services import create_token
from tasks.services import start_job
from tests import factories
from tests.conftest import make_user

_seq = itertools.count(1)


def add_mirrors(admin, n):
    for _ in range(n):
        factories.mirror()


def add_hosts(admin, n):
    for _ in range(n):
        factories.host(admin)


def add_instances(admin, n):
    host = factories.host(admin)
    for _ in range(n):
        factories.instance(host)


def add_drifts(admin, n):
    for _ in range(n):
        factories.drift(factories.mirror(), "qos_timeout_ms")


def add_members(admin, n):
    for _ in range(n // 2):  # failover pairs, each in its own mirror
        mirror = factories.mirror(requires_tls=False)
        factories.member(mirror)
        factories.member(mirror)


def add_pending_members(admin, n):
    for _ in range(n):  # on a TLS mirror the second member waits for authorization
        mirror = factories.mirror()
        factories.member(mirror)
        factories.member(mirror)


def add_dn_updates(admin, n):
    member = factories.member(factories.mirror())
    for i in range(n):
        factories.dn_update(member, f"CN=node{next(_seq)}-{i},O=Example")


def add_databases(admin, n):
    mirror = factories.mirror()
    member = factories.member(mirror)
    for _ in range(n):
        factories.copy(factories.database(mirror), member)


def add_jobs(admin, n):
    host = factories.host(admin)
    mirror = factories.mirror()
    member = factories.member(mirror)
    for _ in range(n):
        start_job(admin, "check_host", host)
        start_job(admin, "stop_mirroring", member, mirror=mirror, member=member)


def add_audit_events(admin, n):
    mirror = factories.mirror()
    for _ in range(n):
        audit.record(admin, "mirror.touch", mirror, before={}, after={})


def add_tokens(admin, n):
    for i in range(n):
        create_token(admin, name=f"token {i}")


def add_users(admin, n):
    for i in range(n):
        make_user(f"user-{next(_seq)}-{i}", ("viewer", "operator", "admin")[i % 3])


# endpoint, seeding function, pinned query count: role lookup + COUNT + page (+ prefetches)
LISTS = [
    ("mirrors", add_mirrors, 3),
    ("hosts", add_hosts, 3),
    ("instances", add_instances, 3),  # with their hosts
    ("drifts", add_drifts, 3),  # with their mirrors
    ("members", add_members, 3),
    ("pending-members", add_pending_members, 3),
    ("dn-updates", add_dn_updates, 3),
    ("databases", add_databases, 4),  # + copies with their members
    ("database-copies", add_databases, 3),
    ("jobs", add_jobs, 3),
    ("audit-events", add_audit_events, 3),
    ("tokens", add_tokens, 3),
    ("users", add_users, 4),  # + groups
]


@pytest.mark.parametrize("name,seed,queries", LISTS, ids=[row[0] for row in LISTS])
def test_a_list_costs_the_same_queries_for_2_and_20_rows(
    admin_user, django_assert_num_queries, name, seed, queries
):
    def listed():
        client = APIClient()
        # A fresh user object each time, so no role is cached between requests.
        client.force_authenticate(User.objects.get(pk=admin_user.pk))
        with django_assert_num_queries(queries):
            response = client.get(f"/api/v1/{name}/")
        assert response.status_code == 200
        return response.json()["count"]

    seed(admin_user, 2)
    small = listed()
    seed(admin_user, 18)
    large = listed()

    assert small >= 2 and large >= small + 18

"""Property-based run of every API operation against its own OpenAPI schema (schemathesis):
no 5xx, and every response's status, content type and body match what the schema promises.

Generated ids rarely hit a real row, so half the cases reuse the seeded objects' ids; without
that, detail endpoints would only ever answer 404. Operations (202 with a queued job) are
exercised like any other write: no worker runs, so every one of them can be called here.
"""

import os
from collections import Counter

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import ApiToken, AuditEvent

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Per operation and generation mode: enough to vary, small enough for CI. Raise it for a deeper
# hunt, e.g. PORTAL_FUZZ_EXAMPLES=100 .venv/bin/pytest tests/api/test_schemathesis.py
EXAMPLES = int(os.environ.get("PORTAL_FUZZ_EXAMPLES", "12"))
# a guard against a hang, not a time limit: under a loaded CI machine the run has taken 3 min
pytestmark = pytest.mark.timeout(max(480, EXAMPLES * 40))


def seeded_ids(world, user_token) -> dict[str, list[int]]:
    """Ids of real rows per resource, so detail cases get past 404."""
    return {
        "mirrors": [world.mirror.pk],
        "hosts": [world.host.pk, world.spare_host.pk],
        "instances": [world.instance.pk],
        "drifts": [world.drift.pk],
        "members": [world.member.pk, world.pending.pk],
        "pending-members": [world.pending.pk],
        "dn-updates": [world.dn_update.pk],
        "databases": [world.database.pk, world.spare_database.pk],
        "database-copies": [world.copy.pk],
        "jobs": [world.job.pk, world.failed_job.pk],
        "audit-events": list(AuditEvent.objects.values_list("pk", flat=True)[:3]),
        "tokens": [user_token.pk],
        "users": [world.someone.pk],
        "alerts": [world.alert.pk],
        "mirror-roles": [world.mirror_role.pk],
    }


def restore_caller(user, token):
    """Undo what a generated case may do to the caller itself (revoke its token, demote or
    deactivate it), so the rest of the run is not just 401s."""
    User.objects.filter(pk=user.pk).update(is_active=True)
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=None)
    user.groups.set([Group.objects.get_or_create(name="admin")[0]])


# Body fields that point at other rows, and the resource whose seeded ids they may take (when
# the schema makes them ids: a join's `member` and an import's `mirror` are names).
REFERENCES = {"mirror": "mirrors", "host": "hosts", "member": "members", "database": "databases"}
NAMES = st.from_regex(r"[A-Z][A-Z0-9]{0,9}", fullmatch=True)
# Fields whose rule a random string almost never meets: values an operator would type.
TYPED = {
    "private": st.sampled_from(["10.9.9.9:2188", "alpha-private.example:2188"]),
    "superserver": st.sampled_from(["10.9.9.8:1972", "alpha1.example:1973"]),
    "cert": st.just("/tls/iris.pem"),
    "key": st.just("/tls/iris.key"),
    "ca": st.just("/tls/ca.pem"),
    "databases": st.sampled_from([["SALES"], ["sales", "SALES"]]),
    "instance": NAMES,
}


def with_real_references(operation, ids, **kwargs):
    """Positive cases whose references and names are real enough for operations to start."""
    fields = {field: st.sampled_from(ids[res]) for field, res in REFERENCES.items()}
    typed = st.fixed_dictionaries(TYPED)

    def patch(drawn):
        case, values, name, text = drawn
        if isinstance(case.body, dict):
            for field, value in values.items():
                if isinstance(case.body.get(field), int):
                    case.body[field] = value
            case.body.update({f: v for f, v in text.items() if f in case.body})
            if "name" in case.body:
                case.body["name"] = name
        return case

    return st.tuples(
        operation.as_strategy(GenerationMode.POSITIVE, **kwargs),
        st.fixed_dictionaries(fields),
        NAMES,
        typed,
    ).map(patch)


def strategy_for(operation, ids):
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    strategies = [operation.as_strategy(mode) for mode in modes]
    writes = operation.method.lower() in ("post", "put", "patch")
    if writes:
        strategies.append(with_real_references(operation, ids))
    resource = operation.path.removeprefix("/api/v1/").split("/")[0]
    if "{id}" in operation.path:
        for pk in ids.get(resource, []):
            real = {"path_parameters": {"id": pk}}
            strategies.append(operation.as_strategy(GenerationMode.POSITIVE, **real))
            if writes:
                strategies.append(with_real_references(operation, ids, **real))
    return st.one_of(strategies)


def exercise(operation, ids, auth, after_each) -> Counter:
    """Send the operation's generated cases; return how often each status code came back."""
    codes = Counter()

    @settings(
        max_examples=EXAMPLES * 2,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy_for(operation, ids))
    def run(case):
        response = case.call(headers=auth)
        codes[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=auth)
        finally:
            after_each()

    run()
    return codes


@pytest.fixture
def wsgi_app():
    """The portal's WSGI app, served in-process on the test's own database connection.

    Django closes the connection at the end of every request; that would end the test's
    transaction, so (as Django's own test client does) those handlers are unhooked meanwhile."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_no_generated_request_gets_a_5xx_or_breaks_the_schema(world, admin_user, wsgi_app):
    token, secret = world.tokens["admin"]
    auth = {"Authorization": f"Bearer {secret}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app, headers=auth)
    ids = seeded_ids(world, token)
    seen: dict[str, Counter] = {}

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40
    # Reads first and deletes last, so the seeded rows still exist when reads look for them.
    order = {"get": 0, "post": 1, "put": 1, "patch": 1, "delete": 2}
    operations.sort(key=lambda op: order[op.method.lower()])

    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        seen[label] = exercise(operation, ids, auth, lambda: restore_caller(admin_user, token))

    # It really exercised the API: every read answered 200 at least once, and writes got through.
    for label, codes in seen.items():
        if label.startswith("GET"):
            assert codes[200] > 0, (label, codes)
    successful_writes = sum(
        n
        for label, codes in seen.items()
        if not label.startswith("GET")
        for code, n in codes.items()
        if 200 <= code < 300
    )
    assert successful_writes >= 10, seen
    print({label: dict(codes) for label, codes in seen.items()})

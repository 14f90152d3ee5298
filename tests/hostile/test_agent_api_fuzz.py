"""Property-based fuzzing of the agent API's JSON routes (issue 12): arbitrary JSON values
(huge integers, NaN, lone surrogates, deep nesting, the agent's own field names with values
of every type) and raw bytes, on a real agent process.  Never a 500, every refusal in the
agent's error shape and logged as a WARNING naming the peer, and the agent still answers
/v1/health afterwards.

Two targets (test_agent_api_hostile.py's site): every body-taking route on GHOST, an
instance that never runs (a body that passes every check gets 503 instance_unavailable,
and nothing a random body asks for can happen), and the routes whose valid bodies are
harmless on A, the running primary (there nothing may be a 5xx at all).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.agent.mirror import SETTING_KINDS
from tests.hostile.test_agent_api_hostile import (  # noqa: F401
    BODY_ROUTES,
    assert_refused,
    assert_serving,
    path_for,
    send,
    site,
)

pytestmark = pytest.mark.timeout(600)

# every field name some route takes, so random objects get past "unknown fields"
FIELDS = sorted(
    {
        *SETTING_KINDS,
        *("name", "mode", "mirrored", "databases", "all", "wait", "catchup", "port"),
        *("mirror", "private", "member", "settings", "address", "type", "superserver"),
        *("remove_db_attribute", "remove_tls", "skip_verify", "cert", "key", "ca"),
    }
)
# routes whose valid bodies the running primary A refuses or takes harmlessly
SAFE_ON_A = [
    ("PATCH", "/v1/instances/{name}/mirror"),
    ("POST", "/v1/instances/{name}/mirror"),
    ("POST", "/v1/instances/{name}/mirror/join"),
    ("PATCH", "/v1/instances/{name}/mirror/members/{member}"),
    ("PUT", "/v1/instances/{name}/tls"),
    ("POST", "/v1/instances/{name}/databases"),
    ("POST", "/v1/instances/{name}/databases/catchup"),
    ("POST", "/v1/instances/{name}/databases/{db}/catchup"),
    ("POST", "/v1/instances/{name}/databases/{db}/activate"),
    ("POST", "/v1/instances/{name}/databases/clear-failover-db"),
]
assert set(SAFE_ON_A) <= set(BODY_ROUTES)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

texts = st.text(
    st.one_of(
        st.characters(),
        st.characters(categories=["Cs"]),  # lone surrogates, sent as \udXXX escapes
        st.sampled_from(':/\\"\x00\n\t\ufffd'),
    ),
    max_size=40,
) | st.sampled_from(["127.0.0.1:1", "/tmp/x.pem", "USER", "dr", "failover", "HOSTILE", "B"])
integers = st.integers() | st.sampled_from(
    [0, -1, 1, 100, 600_000, 65535, 65536, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1]
)
scalars = (
    st.none() | st.booleans() | integers | st.floats(allow_nan=True, allow_infinity=True) | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | texts, inner, max_size=4)
    ),
    max_leaves=16,
)
objects = st.dictionaries(st.sampled_from(FIELDS) | texts, json_values, max_size=5)
json_bodies = (objects | json_values).map(lambda v: json.dumps(v).encode())


def _nested(depth: int) -> bytes:
    return b'{"databases": ' + b"[" * depth + b"]" * depth + b"}"


raw_bodies = st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda body, cut: body[:cut], json_bodies, st.integers(0, 200)),  # truncated
    st.builds(lambda a, junk, b: a + junk + b, json_bodies, st.binary(max_size=8), json_bodies),
    st.integers(1, 6000).map(_nested),
    st.sampled_from([b"NaN", b"-Infinity", b'{"wait": NaN}', b'{"a": 1, "a": 1}', b"\xff"]),
)
content_types = st.sampled_from(
    ["application/json"] * 6 + ["text/plain", "application/json; charset=latin-1", None]
)


class Record:
    """What the fuzzing saw: the client ports of refusals, checked against the log at the end."""

    def __init__(self):
        self.refused: list[int] = []
        self.statuses: dict[int, int] = {}

    def check(self, answer, allow_503: bool) -> None:
        self.statuses[answer.status] = self.statuses.get(answer.status, 0) + 1
        if answer.status < 400:
            json.loads(answer.body)  # a success is JSON too
            return
        error = answer.error if answer.status >= 500 else assert_refused(answer)
        if answer.status >= 500:
            assert allow_503 and (answer.status, error["code"]) == (503, "instance_unavailable"), (
                answer.status,
                answer.body[:300],
            )
        self.refused.append(answer.port)

    def assert_logged(self, site) -> None:  # noqa: F811
        logged = {
            int(m.group(1))
            for line in site.agent.log().splitlines()
            if " WARNING " in line
            for m in re.finditer(r"127\.0\.0\.1:(\d+)\b", line)
        }
        missing = [p for p in self.refused if p not in logged]
        assert not missing, f"{len(missing)} refusals not logged as WARNING with the peer"


def _fuzz(site, routes, bodies, instance: str) -> Record:  # noqa: F811
    record = Record()

    @FUZZ
    @given(route=st.sampled_from(routes), body=bodies, content_type=content_types)
    def run(route, body, content_type):
        method, template = route
        answer = send(site, method, path_for(template, instance), body, content_type)
        if content_type != "application/json" and body:
            assert answer.status == 415, (content_type, answer.body[:200])
        record.check(answer, allow_503=instance == "GHOST")

    run()
    record.assert_logged(site)
    assert_serving(site)
    return record


def test_arbitrary_json_on_every_json_route_never_breaks_the_agent(site):  # noqa: F811
    record = _fuzz(site, BODY_ROUTES, json_bodies, "GHOST")
    assert any(400 <= s < 500 for s in record.statuses), record.statuses


def test_raw_bytes_on_every_json_route_never_break_the_agent(site):  # noqa: F811
    _fuzz(site, BODY_ROUTES, raw_bodies, "GHOST")


def test_arbitrary_json_reaching_the_running_primary_is_never_a_5xx(site):  # noqa: F811
    before = site.a.status()["status"]
    _fuzz(site, SAFE_ON_A, json_bodies | raw_bodies, "A")
    assert site.a.status()["status"] == before == "Primary"

"""A small seeded world for the API tests, and clients that authenticate the way scripts do:
with a real Bearer token per role.

No Celery worker runs here: an operation's job stays queued (Celery's in-memory broker only
holds the message), so the tests see the request's side of every operation, never its effect
on members."""

from dataclasses import dataclass, field

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import ApiToken
from members.models import (
    DatabaseCopy,
    Drift,
    Host,
    Instance,
    Member,
    Mirror,
    MirroredDatabase,
    PendingDNUpdate,
)
from monitor.models import Alert
from tasks.models import Job
from tasks.services import finish_job, start_job
from tests import factories
from tests.conftest import make_user

RANK = {None: 0, "viewer": 1, "operator": 2, "admin": 3}
# Every collection under /api/v1/.
RESOURCES = [
    "mirrors",
    "hosts",
    "instances",
    "drifts",
    "members",
    "pending-members",
    "dn-updates",
    "databases",
    "database-copies",
    "jobs",
    "audit-events",
    "tokens",
    "users",
    "mirror-roles",
]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The seeded users get real passwords; hashing them properly would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class World:
    mirror: Mirror
    host: Host
    spare_host: Host
    member: Member
    pending: Member
    database: MirroredDatabase
    spare_database: MirroredDatabase
    copy: DatabaseCopy
    dn_update: PendingDNUpdate
    instance: Instance
    drift: Drift
    job: Job  # queued (no worker runs)
    failed_job: Job
    someone: object
    alert: Alert
    tokens: dict = field(default_factory=dict)  # role -> (ApiToken, secret)
    mirror_role: object = None  # an operator of ALPHA alone (docs/access.md)

    @property
    def dr(self) -> Member:
        """A DR async of the mirror with a private address, the member type that is promoted
        (guide §5.5); made on first use, so the world's other tests do not see it."""
        found = Member.objects.filter(mirror=self.mirror, name="ALPHAPROMO").first()
        return found or factories.member(
            self.mirror,
            name="ALPHAPROMO",
            member_type="dr",
            mirror_private_address="10.0.0.9",
            authorization=Member.AUTHORIZED,
        )

    @property
    def stopped(self) -> Member:
        """A former failover member whose instance is down, recorded DR as the new primary's
        configuration lists it after a promotion with no primary (guide §5.5, §6.3): the one
        ValidatedMember is cleared on; made on first use, like `dr`."""
        found = Member.objects.filter(mirror=self.mirror, name="ALPHAOLD").first()
        return found or factories.member(
            self.mirror,
            name="ALPHAOLD",
            member_type="dr",
            authorization=Member.AUTHORIZED,
            status="Down",
            observed_at=timezone.now(),
        )

    def token_of(self, role) -> ApiToken | None:
        return self.tokens[role][0] if role else None


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def world(users):
    admin = users["admin"]
    mirror = factories.mirror(name="ALPHA")
    host = factories.host(admin, name="alpha-host")
    member = factories.member(mirror, name="ALPHA1", host=host)
    # ALPHA requires TLS, so its second member waits for an admin, by the DN it presented.
    pending = factories.member(mirror, name="ALPHA2", x509_dn="CN=alpha2,O=Example")
    database = factories.database(mirror, name="SALES")
    copy = factories.copy(database, member, status="Normal")
    world = World(
        mirror=mirror,
        host=host,
        spare_host=factories.host(admin, name="spare-host"),
        member=member,
        pending=pending,
        database=database,
        spare_database=factories.database(mirror, name="SPARE"),
        copy=copy,
        dn_update=factories.dn_update(member, "CN=alpha1,O=Example"),
        instance=factories.instance(host, name="IRIS"),
        drift=factories.drift(mirror, "qos_timeout_ms", observed="9000"),
        job=start_job(admin, "check_host", host),
        failed_job=start_job(admin, "refresh_mirror", mirror, mirror=mirror),
        someone=make_user("sam-someone", "viewer"),
        alert=Alert.objects.create(
            mirror=mirror,
            member_name="ALPHA1",
            rule=Alert.MEMBER_DOWN,
            key="member_down:ALPHA:ALPHA1",
            text="ALPHA1 is Down",
            opened_at=timezone.now(),
        ),
    )
    finish_job(world.failed_job, error="ALPHA1 did not answer.")
    world.mirror_role = account_services.set_mirror_role(
        admin, make_user("mo-mirror-only", None), mirror, "operator"
    )
    for role, user in users.items():
        world.tokens[role] = account_services.create_token(user, name=f"{role} script")
    return world


@pytest.fixture
def client_for(world):
    """`client_for(role)`: a client holding that role's token; None is an anonymous client."""

    def make(role):
        return bearer(world.tokens[role][1]) if role else APIClient()

    return make

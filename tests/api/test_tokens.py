"""API tokens: the secret is shown once, only its hash is kept, and a revoked or wrong token is
refused with 401."""

import hashlib
import secrets

from rest_framework.test import APIClient

from accounts.models import ApiToken
from tests.api.conftest import bearer

V1 = "/api/v1"


def new_token(client, name="deploy"):
    response = client.post(V1 + "/tokens/", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_new_token_works_as_a_bearer_token(world, client_for, viewer):
    created = new_token(client_for("viewer"))

    response = bearer(created["secret"]).get(V1 + "/mirrors/")

    assert response.status_code == 200
    assert response.json()["results"][0]["name"] == "ALPHA"
    assert ApiToken.objects.get(pk=created["id"]).last_used_at is not None


def test_only_the_hash_of_a_token_is_stored(world, client_for):
    created = new_token(client_for("viewer"))
    stored = ApiToken.objects.get(pk=created["id"])

    assert stored.key_hash == hashlib.sha256(created["secret"].encode()).hexdigest()
    assert created["secret"] not in str(ApiToken.objects.filter(pk=stored.pk).values().get())
    assert created["secret"].startswith(stored.hint)


def test_the_secret_is_returned_once_and_the_hash_never(world, client_for):
    client = client_for("viewer")
    created = new_token(client)

    listed = client.get(V1 + "/tokens/").json()["results"]
    detail = client.get(V1 + f"/tokens/{created['id']}/").json()

    for body in [*listed, detail]:
        assert "secret" not in body and "key_hash" not in body
    assert created["secret"] not in str(listed) + str(detail)


def test_a_revoked_token_gets_401(world, client_for):
    created = new_token(client_for("operator"))
    token_client = bearer(created["secret"])
    assert token_client.get(V1 + "/mirrors/").status_code == 200

    assert token_client.delete(V1 + f"/tokens/{created['id']}/").status_code == 204

    response = token_client.get(V1 + "/mirrors/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert ApiToken.objects.get(pk=created["id"]).revoked_at is not None


def test_the_revoke_action_revokes_too(world, client_for):
    client = client_for("viewer")
    created = new_token(client)

    response = client.post(V1 + f"/tokens/{created['id']}/revoke/")

    assert response.status_code == 200 and response.json()["is_active"] is False
    assert bearer(created["secret"]).get(V1 + "/mirrors/").status_code == 401


def test_a_wrong_or_malformed_token_gets_401(world):
    for header in (
        "Bearer mp_not-a-real-token",
        "Bearer ",
        "Bearer two tokens",
        "Token mp_wrong",
    ):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        assert client.get(V1 + "/mirrors/").status_code == 401, header


def test_a_token_of_an_inactive_user_gets_401(world, client_for, viewer):
    viewer.is_active = False
    viewer.save()

    assert client_for("viewer").get(V1 + "/mirrors/").status_code == 401


def test_nobody_sees_or_revokes_another_users_token(world, client_for):
    admins_token = world.token_of("admin")
    viewer = client_for("viewer")

    assert viewer.get(V1 + f"/tokens/{admins_token.pk}/").status_code == 404
    assert viewer.delete(V1 + f"/tokens/{admins_token.pk}/").status_code == 404
    listed = {t["id"] for t in viewer.get(V1 + "/tokens/").json()["results"]}
    assert listed == {world.token_of("viewer").pk}
    admins_token.refresh_from_db()
    assert admins_token.is_active


def test_a_token_needs_a_name(world, client_for):
    response = client_for("viewer").post(V1 + "/tokens/", {"name": "  "}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["name"][0]["code"] == "required"


def test_session_login_works_and_needs_the_csrf_token_for_changes(world, viewer):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username=viewer.username, password="correct horse battery")

    assert client.get(V1 + "/mirrors/").status_code == 200
    refused = client.post(V1 + "/tokens/", {"name": "no csrf"}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]

    # What a page does: echo the CSRF cookie (any 32 letters and digits) in X-CSRFToken.
    csrf = secrets.token_hex(16)
    client.cookies["csrftoken"] = csrf
    accepted = client.post(
        V1 + "/tokens/", {"name": "with csrf"}, format="json", HTTP_X_CSRFTOKEN=csrf
    )
    assert accepted.status_code == 201

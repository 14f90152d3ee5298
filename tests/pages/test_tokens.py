"""Tokens made on the Tokens page: shown once, usable against the API, dead once revoked."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiToken, AuditEvent
from accounts.services import create_token

pytestmark = pytest.mark.django_db


def create_in_ui(client, name="nightly script"):
    response = client.post(reverse("token-list"), {"name": name})
    assert response.status_code == 200
    secret = re.search(r'id="token-secret"[^>]*value="([^"]+)"', response.text).group(1)
    return response, secret


def schema_status(secret):
    return Client().get("/api/schema/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code


def test_a_new_token_is_shown_once_with_a_copy_it_now_warning(client_as, viewer):
    client = client_as("viewer")
    response, secret = create_in_ui(client)
    assert "Copy it now" in response.text
    assert response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=viewer)
    assert token.name == "nightly script"
    assert secret.startswith(token.hint)
    assert secret not in client.get(reverse("token-list")).text  # never shown again
    assert token.hint in client.get(reverse("token-list")).text
    assert AuditEvent.objects.filter(action="token.create", actor=viewer).count() == 1


def test_a_token_made_in_the_ui_works_against_the_api_until_revoked(client_as, viewer):
    client = client_as("viewer")
    _, secret = create_in_ui(client)
    assert schema_status(secret) == 200
    token = ApiToken.objects.get(user=viewer)
    token.refresh_from_db()
    assert token.last_used_at is not None

    response = client.post(reverse("token-revoke", args=[token.pk]), follow=True)
    assert "is revoked" in response.text
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert schema_status(secret) == 401
    assert AuditEvent.objects.filter(action="token.revoke", actor=viewer).count() == 1


def test_a_wrong_token_is_refused(client_as):
    _, secret = create_in_ui(client_as("viewer"))
    assert schema_status(secret[:-2] + "xx") == 401


def test_a_token_acts_with_its_owners_role(norole):
    _, secret = create_token(norole, name="made before the role was taken away")
    assert schema_status(secret) == 403


def test_a_token_needs_a_name(client_as, viewer):
    response = client_as("viewer").post(reverse("token-list"), {"name": "   "})
    assert response.status_code == 200
    assert "This field is required" in response.text
    assert not ApiToken.objects.filter(user=viewer).exists()


def test_nobody_revokes_someone_elses_token_from_the_page(client_as, viewer):
    token, secret = create_token(viewer, name="vera's")
    response = client_as("admin").post(reverse("token-revoke", args=[token.pk]))
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.is_active
    assert schema_status(secret) == 200


def test_the_token_list_shows_only_my_tokens(client_as, viewer, operator):
    create_token(viewer, name="veras-token")
    create_token(operator, name="ottos-token")
    page = client_as("viewer").get(reverse("token-list")).text
    assert "veras-token" in page
    assert "ottos-token" not in page


def test_the_example_request_on_the_new_token_page_works_as_shown(client_as, viewer):
    response, secret = create_in_ui(client_as("viewer"))

    example = re.search(r'curl -H "Authorization: Bearer ([^"]+)" (\S+)</code>', response.text)
    assert example is not None, response.text
    shown_secret, url = example.groups()
    path = re.sub(r"^https?://[^/]+", "", url)
    answer = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {shown_secret}")

    assert shown_secret == secret
    assert answer.status_code == 200, (url, answer.content[:200])
    assert "results" in answer.json()

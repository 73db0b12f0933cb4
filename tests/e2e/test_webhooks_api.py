"""The webhook endpoints API over HTTP, with private targets refused (the production default)."""

from __future__ import annotations

import uuid

import pytest

from ledger.db import unit_of_work
from ledger.keys import issue_api_key
from ledger.tenants import create_tenant
from tests.e2e.webhook_helpers import register, webhook_stack

PUBLIC_URL = "https://93.184.215.14/hooks/tally"
# Every event type, holds included: an endpoint registered without a list gets them all.
ALL_TYPES = [
    "transaction.applied",
    "transaction.rejected",
    "transaction.failed",
    "hold.captured",
    "hold.voided",
    "hold.expired",
]


@pytest.fixture(scope="module")
def stack(database_url, redis_url, tmp_path_factory):
    with webhook_stack(
        database_url,
        redis_url,
        tmp_path_factory.mktemp("webhooks-api"),
        worker=False,
        TALLY_WEBHOOK_ALLOW_PRIVATE_TARGETS="false",
    ) as stack:
        yield stack


@pytest.fixture
def client(stack, tenant):
    return stack.client(tenant.admin_api_key)


def patch(client, path, body):
    return client.session.patch(f"{client.base_url}/api/v1{path}", json=body, timeout=60)


def delete(client, path):
    return client.session.delete(f"{client.base_url}/api/v1{path}", timeout=60)


def test_registration_answers_the_endpoint_and_its_secret_which_is_never_shown_again(client):
    created = register(client, PUBLIC_URL, description="ledger sync")

    assert created["secret"].startswith("whsec_")
    assert created["url"] == PUBLIC_URL
    assert created["event_types"] == ALL_TYPES
    assert (created["enabled"], created["description"]) == (True, "ledger sync")
    shown = client.get(f"/webhook-endpoints/{created['id']}").json()
    assert "secret" not in shown
    assert shown == {k: v for k, v in created.items() if k != "secret"}
    listed = client.get("/webhook-endpoints").json()
    assert [e["id"] for e in listed] == [created["id"]]
    assert all("secret" not in e for e in listed)


def test_an_endpoint_can_be_changed_disabled_enabled_and_deleted(client):
    endpoint = register(client, PUBLIC_URL)
    path = f"/webhook-endpoints/{endpoint['id']}"

    changed = patch(
        client,
        path,
        {
            "url": PUBLIC_URL + "/v2",
            "event_types": ["transaction.failed"],
            "description": "only failures",
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["url"] == PUBLIC_URL + "/v2"
    assert changed.json()["event_types"] == ["transaction.failed"]
    assert changed.json()["description"] == "only failures"

    disabled = patch(client, path, {"enabled": False}).json()
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "disabled through the API")
    conflict = client.post(f"{path}/test", {})
    assert (conflict.status_code, conflict.json()["code"]) == (409, "webhook_endpoint_disabled")
    enabled = patch(client, path, {"enabled": True}).json()
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)
    assert patch(client, path, {}).status_code == 422

    assert delete(client, path).status_code == 204
    assert client.get(path).status_code == 404
    assert delete(client, path).status_code == 404
    assert endpoint["id"] not in [e["id"] for e in client.get("/webhook-endpoints").json()]


def test_rotation_returns_a_new_secret_and_when_the_old_one_stops_signing(client):
    endpoint = register(client, PUBLIC_URL)
    path = f"/webhook-endpoints/{endpoint['id']}/rotate-secret"

    rotated = client.post(path, {})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] not in {endpoint["secret"], None}
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert client.post(path, {"overlap_seconds": -1}).status_code == 422
    assert client.post(path, {"overlap_seconds": 0}).json()["previous_secret_expires_at"] is None


def test_a_tenant_sees_only_its_own_endpoints(stack, engine, client):
    endpoint = register(client, PUBLIC_URL)
    with unit_of_work(engine) as work:
        other_key = issue_api_key(work, create_tenant(work, "another merchant"), "admin")["api_key"]
    other = stack.client(other_key)
    path = f"/webhook-endpoints/{endpoint['id']}"

    assert other.get("/webhook-endpoints").json() == []
    assert other.get(path).status_code == 404
    assert patch(other, path, {"enabled": False}).status_code == 404
    assert other.post(f"{path}/rotate-secret", {}).status_code == 404
    assert other.post(f"{path}/test", {}).status_code == 404
    assert other.get(f"{path}/deliveries").status_code == 404
    assert other.post(f"{path}/recover", {"since": "2020-01-01T00:00:00Z"}).status_code == 404
    assert delete(other, path).status_code == 404
    assert client.get(path).json()["enabled"] is True


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://[::1]/hook",
        "http://169.254.10.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest",
    ],
)
def test_private_and_metadata_addresses_are_refused_when_private_targets_are_off(client, url):
    response = client.post("/webhook-endpoints", {"url": url})

    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "webhook_url_refused"
    assert "url" in response.json()["errors"]


def test_changing_the_url_to_a_private_address_is_refused_too(client):
    endpoint = register(client, PUBLIC_URL)
    response = patch(client, f"/webhook-endpoints/{endpoint['id']}", {"url": "http://10.0.0.1/"})
    assert response.status_code == 422
    assert client.get(f"/webhook-endpoints/{endpoint['id']}").json()["url"] == PUBLIC_URL


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "validation_failed"),
        ({"url": "ftp://93.184.215.14/"}, "webhook_url_refused"),
        ({"url": PUBLIC_URL, "event_types": ["transaction.created"]}, "validation_failed"),
        ({"url": PUBLIC_URL, "event_types": []}, "validation_failed"),
        ({"url": PUBLIC_URL, "description": "x" * 501}, "validation_failed"),
    ],
)
def test_invalid_registrations_are_refused_with_a_problem(client, body, code):
    response = client.post("/webhook-endpoints", body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code


def test_unknown_ids_are_not_found(client):
    endpoint = register(client, PUBLIC_URL)
    assert client.get("/webhook-endpoints/not-a-uuid").status_code == 404
    assert client.get(f"/webhook-endpoints/{uuid.uuid4()}").status_code == 404
    missing = client.get(f"/webhook-endpoints/{endpoint['id']}/deliveries/{uuid.uuid4()}")
    assert (missing.status_code, missing.json()["code"]) == (404, "webhook_delivery_not_found")
    bad_cursor = client.get(f"/webhook-endpoints/{endpoint['id']}/deliveries?cursor=zzz")
    assert bad_cursor.status_code == 400

from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ledger.webhooks.signing import event_body, generate_secret, webhook_headers


def test_headers_verify_with_the_standard_webhooks_library():
    secret = generate_secret()
    body = event_body("transaction.applied", datetime.now(UTC), {"id": "t1", "amount": 5})
    headers = webhook_headers("msg_abc", [secret], body, int(datetime.now(UTC).timestamp()))

    payload = Webhook(secret).verify(body, headers)

    assert payload["type"] == "transaction.applied"
    assert payload["data"] == {"id": "t1", "amount": 5}
    assert payload["timestamp"].endswith("Z")


def test_during_an_overlap_both_secrets_verify_and_a_third_does_not():
    new, old = generate_secret(), generate_secret()
    body = event_body("transaction.rejected", datetime.now(UTC), {"id": "t2"})
    headers = webhook_headers("msg_def", [new, old], body, int(datetime.now(UTC).timestamp()))

    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_a_changed_body_does_not_verify():
    secret = generate_secret()
    body = event_body("transaction.applied", datetime.now(UTC), {"amount": 5})
    headers = webhook_headers("msg_x", [secret], body, int(datetime.now(UTC).timestamp()))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"5", b"6"), headers)


def test_secrets_are_whsec_prefixed_and_unique():
    secrets = {generate_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(s.startswith("whsec_") for s in secrets)

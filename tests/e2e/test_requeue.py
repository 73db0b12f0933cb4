"""A failed transaction requeued from the API, the console or `tally requeue` is applied the
same way: the requeue is audited and the transaction is published to the workers as soon as
it commits. The stack here runs no relay, so nothing but that publish can bring a requeued
transaction to a worker: an entry point that left it to the relay would leave it queued."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest
import requests
from sqlalchemy import Engine

from tally.stack import TALLY
from tests.conftest import TenantFixture, assert_invariants, make_tenant
from tests.support.faults import refusing_credits
from tests.support.stack import ApiClient, Stack, stack_env

REFUSED_CREDIT = 1000
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')
# A transaction published at once is applied within a second or two; the relay, were one
# running, would publish it only after TALLY_RELAY_AGE_SECONDS, and none runs here.
APPLIED_WITHIN_SECONDS = 20


@pytest.fixture(scope="module")
def stack(
    database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """API and one worker without a relay; a system fault fails a transaction at once."""
    env = stack_env(database_url, broker_url, TALLY_MAX_APPLY_ATTEMPTS="1")
    stack = Stack(database_url, broker_url, tmp_path_factory.mktemp("requeue-logs"), env)
    try:
        stack.start_api()
        stack.start_worker(relay=False)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def merchant(engine: Engine) -> Iterator[TenantFixture]:
    made = make_tenant(engine, "requeue")
    yield made
    assert_invariants(engine, made.id)


def failed_topup(engine: Engine, client: ApiClient) -> tuple[str, str]:
    """A top-up the worker failed (its one attempt hit a fault, since fixed): id and user."""
    user_id = f"requeue-{uuid.uuid4().hex[:8]}"
    body = {
        "user_id": user_id,
        "asset_code": "EUR",
        "amount": REFUSED_CREDIT,
        "reference_id": f"requeue-{uuid.uuid4().hex}",
    }
    with refusing_credits(engine, user_id, REFUSED_CREDIT):
        accepted = client.post("/wallets/topup", body)
        assert accepted.status_code == 202, accepted.text
        failed = client.wait_final(accepted.json()["id"])
    assert (failed["status"], failed["result"]["code"]) == ("failed", "processing_failed")
    return failed["id"], user_id


def requeue_through_the_api(stack: Stack, merchant: TenantFixture, transaction_id: str) -> None:
    answer = stack.client(merchant.admin_api_key).post(f"/transactions/{transaction_id}/requeue")
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "queued"


def requeue_through_the_console(stack: Stack, merchant: TenantFixture, transaction_id: str) -> None:
    browser = requests.Session()
    console = f"{stack.base_url}/console"
    form = browser.get(f"{console}/login", timeout=30)
    token = CSRF_FIELD.search(form.text)
    assert token, form.text[:300]
    signed_in = browser.post(
        f"{console}/login",
        data={"api_key": merchant.admin_api_key, "csrf_token": token.group(1)},
        timeout=30,
    )
    assert signed_in.status_code == 200 and "/console/login" not in signed_in.url
    page = browser.get(f"{console}/transactions/{transaction_id}", timeout=30)
    token = CSRF_FIELD.search(page.text)
    assert token, page.text[:300]
    done = browser.post(
        f"{console}/transactions/{transaction_id}/requeue",
        data={"csrf_token": token.group(1)},
        allow_redirects=False,
        timeout=30,
    )
    assert done.status_code == 303, done.text[:300]


def tally_requeue(
    stack: Stack, merchant: TenantFixture, transaction_id: str
) -> subprocess.CompletedProcess[str]:
    """`tally requeue`, run as an operator would, with the stack's settings."""
    return subprocess.run(
        [*TALLY, "requeue", "--tenant", str(merchant.id), transaction_id],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def requeue_through_the_cli(stack: Stack, merchant: TenantFixture, transaction_id: str) -> None:
    done = tally_requeue(stack, merchant, transaction_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["transaction"]["status"] == "queued"


ENTRY_POINTS: dict[str, Callable[[Stack, TenantFixture, str], None]] = {
    "api": requeue_through_the_api,
    "console": requeue_through_the_console,
    "cli": requeue_through_the_cli,
}


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
def test_a_requeued_transaction_is_published_at_once_and_applied(
    stack: Stack, merchant: TenantFixture, engine: Engine, entry_point: str
) -> None:
    client = stack.client(merchant.api_key)
    transaction_id, user_id = failed_topup(engine, client)

    ENTRY_POINTS[entry_point](stack, merchant, transaction_id)

    final = client.wait_final(transaction_id, timeout=APPLIED_WITHIN_SECONDS)
    assert final["status"] == "applied", final
    balance = client.get(f"/wallets/{user_id}/balance", params={"asset_code": "EUR"}).json()
    assert balance["balance"] == REFUSED_CREDIT
    audit = stack.client(merchant.admin_api_key).get(
        "/audit-events", params={"action": "transaction.requeued"}
    )
    assert [event["target"] for event in audit.json()["events"]] == [
        f"transaction:{transaction_id}"
    ]


def test_requeueing_a_transaction_that_is_not_failed_is_refused_everywhere(
    stack: Stack, merchant: TenantFixture, engine: Engine
) -> None:
    client = stack.client(merchant.api_key)
    transaction_id, _ = failed_topup(engine, client)
    requeue_through_the_api(stack, merchant, transaction_id)
    assert client.wait_final(transaction_id)["status"] == "applied"

    api = stack.client(merchant.admin_api_key).post(f"/transactions/{transaction_id}/requeue")
    cli = tally_requeue(stack, merchant, transaction_id)

    assert (api.status_code, api.json()["code"]) == (409, "transaction_not_failed")
    assert cli.returncode == 1 and "transaction_not_failed" in cli.stderr

"""The console in process: the API app's test client, signed in through the login form the
way a browser signs in (cookies kept by the client, CSRF tokens read from the pages)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from werkzeug.test import TestResponse

from ledger.db import unit_of_work
from ledger.intake import Submission, accept_transaction
from ledger.posting import _count_failed_attempt, post_transactions
from ledger.transaction_request import TransactionRequest
from tests.conftest import TenantFixture

# The in-process app of the API tests.
from tests.integration.api.conftest import app  # noqa: F401

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(page: TestResponse) -> str:
    found = CSRF_FIELD.search(page.get_data(as_text=True))
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class Console:
    """A browser's view of the console: a cookie jar and the pages it was given."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.csrf = ""

    def sign_in(self, api_key: str) -> TestResponse:
        form = self.client.get("/console/login")
        answer = self.client.post(
            "/console/login", data={"api_key": api_key, "csrf_token": csrf_of(form)}
        )
        if answer.status_code == 303:
            self.csrf = csrf_of(self.client.get("/console/"))
        return answer

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.get(f"/console{path}", **kwargs)

    def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: str | None = None
    ) -> TestResponse:
        form = dict(data or {})
        token = self.csrf if csrf is None else csrf
        if token:
            form["csrf_token"] = token
        return self.client.post(f"/console{path}", data=form)

    def text(self, path: str) -> str:
        page = self.get(path)
        assert page.status_code == 200, (page.status_code, page.get_data(as_text=True)[:2000])
        return page.get_data(as_text=True)


@pytest.fixture
def console(app: Flask) -> Console:  # noqa: F811
    return Console(app.test_client())


@pytest.fixture
def admin(console: Console, tenant: TenantFixture) -> Console:
    assert console.sign_in(tenant.admin_api_key).status_code == 303
    return console


@pytest.fixture
def reader(app: Flask, tenant: TenantFixture) -> Console:  # noqa: F811
    signed_in = Console(app.test_client())
    assert signed_in.sign_in(tenant.read_api_key).status_code == 303
    return signed_in


@pytest.fixture
def writer(app: Flask, tenant: TenantFixture) -> Console:  # noqa: F811
    signed_in = Console(app.test_client())
    assert signed_in.sign_in(tenant.api_key).status_code == 303
    return signed_in


def submit(engine: Engine, tenant_id: uuid.UUID, type: str, **fields: Any) -> Submission:
    fields.setdefault("reference_id", f"ref-{uuid.uuid4().hex[:12]}")
    if type not in ("capture", "void", "journal"):
        fields.setdefault("asset_code", "EUR")
    request = TransactionRequest(type=type, **fields).validated()
    with unit_of_work(engine) as work:
        return accept_transaction(work, tenant_id, request, admin=True)


def applied(engine: Engine, tenant_id: uuid.UUID, type: str, **fields: Any) -> Submission:
    """A transaction submitted and applied by the real posting engine."""
    submission = submit(engine, tenant_id, type, **fields)
    post_transactions(engine, [submission.id])
    return submission


def failed(engine: Engine, tenant_id: uuid.UUID, **fields: Any) -> Submission:
    """A transaction that failed the way a worker fails one: a fault on its last attempt."""
    submission = submit(engine, tenant_id, "topup", **fields)
    _count_failed_attempt(
        engine, submission.id, RuntimeError("the disk caught fire"), max_attempts=1
    )
    return submission

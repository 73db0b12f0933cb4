"""Every JSON answer of the API is described exactly by the API's own OpenAPI document.

The test reads `/api/v1/openapi.json` from the app, then drives every operation in it
against the real database: the happy paths and the errors each operation can answer. Each
answer must have a status the operation documents, a Content-Type documented for that
status, the documented required headers, and a body valid against the documented schema;
a problem must carry one of the codes documented for its status. Every operation and
every status the document lists must be exercised, so a new route, or a new documented
answer, without a case here fails the test.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from jsonschema import Draft202012Validator, FormatChecker
from jwt.algorithms import ECAlgorithm
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import Engine, text
from werkzeug.test import TestResponse

from api.app import create_app
from config.settings import Settings
from ledger.db import unit_of_work
from ledger.holds import expire_due_holds
from ledger.keys import issue_api_key
from ledger.posting import _count_failed_attempt
from ledger.seals import seal_tenant
from ledger.tenants import create_tenant, set_rate_limit
from ledger.vocabulary import HoldStatus, TransactionType
from ledger.webhooks.endpoints import MAX_ENDPOINTS_PER_TENANT
from tests.conftest import WEBHOOK_SECRET_KEYS
from tests.integration.api.conftest import NO_KEY, Api
from tests.integration.ledger.helpers import apply, run, submit

PREFIX = "/api/v1"
DOCUMENT_URI = "urn:tally:openapi"
PROBLEM_JSON = "application/problem+json"
CSV = "text/csv"
METHODS = ("get", "put", "post", "patch", "delete")
BODY_METHODS = {"post", "put", "patch"}
RFC_3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")

FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    # jsonschema checks date-time only with an optional package: RFC 3339 by hand instead.
    if not isinstance(value, str):
        return True
    if RFC_3339.fullmatch(value) is None:
        return False
    datetime.fromisoformat(value)  # ValueError for a month 13 or an hour 25
    return True


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects as JSON Schema: `nullable` adds null to the `type`."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {
        key: as_json_schema(value)
        for key, value in node.items()
        if not (key == "nullable" and isinstance(value, bool))
    }
    if node.get("nullable") is True and "type" in node:
        converted["type"] = [node["type"], "null"]
        if "enum" in converted and None not in converted["enum"]:
            converted["enum"] = [*converted["enum"], None]
    return converted


def pointer(*segments: str) -> str:
    """A JSON pointer into the document, as a URI fragment."""
    escaped = (segment.replace("~", "~0").replace("/", "~1") for segment in segments)
    return quote("/" + "/".join(escaped), safe="/~")


@dataclass(frozen=True)
class Answer:
    """What the contract looks at in a response."""

    method: str
    path: str
    status: int
    content_type: str | None
    body: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, response: TestResponse) -> Answer:
        request = response.request
        return cls(
            method=request.method.lower(),
            path=request.path,
            status=response.status_code,
            content_type=response.mimetype if response.content_type else None,
            body=response.get_data(),
            headers={name.lower(): value for name, value in response.headers.items()},
        )


@dataclass
class Contract:
    """The document, and every (method, path template, status) seen answering as it says."""

    document: dict[str, Any] = field(repr=False)
    seen: set[tuple[str, str, str]] = field(default_factory=set, repr=False)
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        resource = Resource(contents=as_json_schema(self.document), specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
        self.routes = [
            (method, template, re.compile(re.sub(r"\{\w+\}", "[^/]+", template)))
            for template, operations in self.document["paths"].items()
            for method in operations
            if method in METHODS
        ]

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for template, operations in self.document["paths"].items():
            for method, operation in operations.items():
                if method in METHODS:
                    yield method, template, operation

    def template_of(self, method: str, path: str) -> str | None:
        """The documented path a request went to; a literal segment beats a parameter."""
        matches = [t for m, t, regex in self.routes if m == method and regex.fullmatch(path)]
        return min(matches, key=lambda t: t.count("{"), default=None)

    def check(self, response: TestResponse) -> None:
        answer = Answer.of(response)
        where = f"{answer.method.upper()} {answer.path} -> {answer.status}"
        self.violations.extend(f"{where}: {problem}" for problem in self.violations_of(answer))

    def violations_of(self, answer: Answer) -> list[str]:
        template = self.template_of(answer.method, answer.path)
        if template is None:
            return ["no such operation in the document"]
        responses = self.document["paths"][template][answer.method]["responses"]
        key = str(answer.status)
        if key not in responses:
            if answer.status < 500 or "default" not in responses:
                return [f"status {key} is not documented"]
            key = "default"
        self.seen.add((answer.method, template, key))
        documented = responses[key]
        content = documented.get("content", {})
        if not content:
            # Werkzeug gives even a 204 a default Content-Type; with no body it describes nothing.
            return [] if not answer.body else ["a body where the document has none"]
        if answer.content_type not in content:
            return [f"Content-Type {answer.content_type} is not one of {sorted(content)}"]
        found = self._header_violations(documented, answer)
        if answer.content_type == CSV:
            # A statement's CSV: the document describes it as text; its columns are
            # tests/integration/api/test_statements.py's to check.
            return [
                *found,
                *(
                    []
                    if answer.body.decode().startswith("effective_at,")
                    else ["the CSV does not start with its header row"]
                ),
            ]
        try:
            body = json.loads(answer.body)
        except ValueError:
            return [*found, "the body is not JSON"]
        schema = pointer("paths", template, answer.method, "responses", key, "content")
        schema += pointer(answer.content_type, "schema")
        validator = Draft202012Validator(
            {"$ref": f"{DOCUMENT_URI}#{schema}"}, registry=self.registry, format_checker=FORMATS
        )
        found += [
            f"body at /{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(body)
        ]
        if answer.content_type == PROBLEM_JSON and isinstance(body, dict):
            found += self._problem_violations(documented, answer, body)
        return found

    def _header_violations(self, documented: dict[str, Any], answer: Answer) -> list[str]:
        found = []
        for name, header in documented.get("headers", {}).items():
            if "$ref" in header:
                header = self.document["components"]["headers"][header["$ref"].rsplit("/")[-1]]
            value = answer.headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    found.append(f"required header {name} is missing")
                continue
            typed: Any = value
            if header["schema"].get("type") == "integer":
                typed = int(value) if value.isdigit() else value
            validator = Draft202012Validator(as_json_schema(header["schema"]))
            found += [f"header {name}: {error.message}" for error in validator.iter_errors(typed)]
        return found

    @staticmethod
    def _problem_violations(
        documented: dict[str, Any], answer: Answer, body: dict[str, Any]
    ) -> list[str]:
        found = []
        if body.get("status") != answer.status:
            found.append(f"problem status {body.get('status')} is not the HTTP status")
        codes = documented.get("x-problem-codes")
        if codes is not None and body.get("code") not in codes:
            found.append(f"problem code {body.get('code')!r} is not one of {codes}")
        return found

    def unexercised(self) -> list[str]:
        """Documented (operation, status) pairs no request of the test was answered with."""
        return [
            f"{method.upper()} {template} -> {status}"
            for method, template, operation in self.operations()
            for status in operation["responses"]
            if status != "default" and (method, template, status) not in self.seen
        ]


class Caller:
    """conftest's Api, asserting the status each case expects and checking the contract."""

    def __init__(self, api: Api, contract: Contract) -> None:
        self.api = api
        self.tenant = api.tenant
        self.contract = contract

    def call(self, method: str, path: str, *, expect: int, **kwargs: Any) -> TestResponse:
        response = self.api.request(method.upper(), path, **kwargs)
        assert response.status_code == expect, (
            f"{method.upper()} {path}: expected {expect}, got {response.status_code}: "
            f"{response.get_data(as_text=True)[:1000]}"
        )
        self.contract.check(response)
        return response

    def get(self, path: str, *, expect: int, **kwargs: Any) -> Any:
        return self.call("GET", path, expect=expect, **kwargs).get_json()

    def post(self, path: str, body: Any = None, *, expect: int, **kwargs: Any) -> Any:
        return self.call("POST", path, expect=expect, json=body, **kwargs).get_json()

    def patch(self, path: str, body: Any, *, expect: int, **kwargs: Any) -> Any:
        return self.call("PATCH", path, expect=expect, json=body, **kwargs).get_json()

    @property
    def admin(self) -> str:
        return self.tenant.admin_api_key


def submission(user_id: str = "alice", amount: int = 100, **fields: Any) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "asset_code": "EUR",
        "amount": amount,
        "reference_id": uuid.uuid4().hex,
        **fields,
    }


def transactions(c: Caller, engine: Engine) -> None:
    body = submission(type="topup", payment_method="card", metadata={"order": 7})
    queued = c.post("/transactions", body, expect=202)
    c.post("/transactions", body, expect=200)
    c.post("/transactions", {**body, "amount": 101}, expect=409)
    c.post("/transactions", submission(type="topup", asset_code="USD"), expect=404)
    adjustment = submission(type="adjustment", amount=-5, reason="correction")
    c.post("/transactions", adjustment, expect=403)
    c.post("/transactions", adjustment, expect=202, key=c.admin)
    c.post("/transactions", submission(type="transfer", to_user_id="alice"), expect=422)
    c.post("/transactions", submission(type="transfer", to_user_id="bob"), expect=202)

    c.get("/transactions", expect=200, query_string={"reference_id": body["reference_id"]})
    c.get("/transactions", expect=404, query_string={"reference_id": "never-used"})
    c.get("/transactions", expect=422)

    tenant = c.tenant.id
    applied = run(engine, tenant, "topup", user_id="alice", amount=10_000)
    spent = run(engine, tenant, "spend", user_id="alice", amount=300, item_id="sword")
    outcomes = [
        queued,
        applied,
        spent,
        run(engine, tenant, "transfer", user_id="alice", to_user_id="bob", amount=200),
        run(engine, tenant, "refund", user_id="alice", amount=100,
            original_transaction_id=uuid.UUID(spent["id"])),
        run(engine, tenant, "spend", user_id="alice", amount=10**9),
    ]  # fmt: skip
    assert {outcome["status"] for outcome in outcomes} == {"queued", "applied", "rejected"}
    for outcome in outcomes:
        c.get(f"/transactions/{outcome['id']}", expect=200)
    c.get("/transactions/not-a-uuid", expect=404)
    c.get(f"/transactions/{uuid.uuid4()}", expect=404)
    c.get(f"/transactions/{applied['id']}", expect=422, query_string={"wait": 31})

    broken = submit(engine, tenant, "topup", user_id="carol", amount=5)
    _count_failed_attempt(engine, broken.id, RuntimeError("fault"), max_attempts=1)
    c.post(f"/transactions/{broken.id}/requeue", expect=202, key=c.admin)
    c.post(f"/transactions/{broken.id}/requeue", expect=409, key=c.admin)
    c.post("/transactions/not-a-uuid/requeue", expect=404, key=c.admin)
    c.post(f"/transactions/{uuid.uuid4()}/requeue", expect=404, key=c.admin)

    items = [
        submission(type="bonus", bonus_type="welcome"),
        {"type": "topup", **body},
        submission(type="adjustment", reason="fix"),
        {"type": "topup", "amount": "ten"},
        "not an object",
    ]
    answer = c.post("/transactions/batch", {"transactions": items}, expect=200)
    assert [r["outcome"] for r in answer["results"]] == [
        "accepted", "replayed", "error", "error", "error",
    ]  # fmt: skip
    too_many = [submission(type="topup") for _ in range(1001)]
    c.post("/transactions/batch", {"transactions": too_many}, expect=413)


def wallets(c: Caller, engine: Engine) -> None:
    for route, extra in (
        ("topup", {"payment_method": "card"}),
        ("bonus", {"bonus_type": "welcome"}),
        ("spend", {"item_id": "shield"}),
    ):
        body = submission("dave", **extra)
        c.post(f"/wallets/{route}", body, expect=202)
        c.post(f"/wallets/{route}", body, expect=200)
        c.post(f"/wallets/{route}", {**body, "amount": 1}, expect=409)
        c.post(f"/wallets/{route}", submission("dave", asset_code="USD"), expect=404)

    for _ in range(3):
        run(engine, c.tenant.id, "topup", user_id="carol", amount=500)
    eur = {"asset_code": "EUR"}
    c.get("/wallets/carol/balance", expect=200, query_string=eur)
    c.get("/wallets/nobody/balance", expect=404, query_string=eur)
    c.get("/wallets/@topup/balance", expect=422, query_string=eur)

    page = c.get("/wallets/carol/transactions", expect=200, query_string={**eur, "limit": 2})
    assert page["next_cursor"] is not None
    last = c.get(
        "/wallets/carol/transactions",
        expect=200,
        query_string={**eur, "cursor": page["next_cursor"]},
    )
    assert last["next_cursor"] is None
    c.get("/wallets/carol/transactions", expect=400, query_string={**eur, "cursor": "bad!"})
    c.get("/wallets/nobody/transactions", expect=404, query_string=eur)
    c.get("/wallets/@topup/transactions", expect=422, query_string=eur)

    for action, status, key in (("freeze", "frozen", None), ("unfreeze", "active", c.admin)):
        changed = c.post(
            f"/wallets/carol/{action}", {**eur, "reason": "ticket 7"}, expect=200, key=key
        )
        assert changed["status"] == status
        c.post(f"/wallets/nobody/{action}", eur, expect=404, key=key)
        c.post(f"/wallets/@topup/{action}", eur, expect=422, key=key)

    c.patch("/wallets/nobody", {**eur, "credit_limit": 1000}, expect=404, key=c.admin)
    c.patch("/wallets/@topup", {**eur, "credit_limit": 1000}, expect=422, key=c.admin)
    closed = c.patch("/wallets/carol", {**eur, "status": "closed"}, expect=200, key=c.admin)
    assert closed["status"] == "closed"
    c.post("/wallets/carol/freeze", eur, expect=409)
    c.post("/wallets/carol/unfreeze", eur, expect=409, key=c.admin)


def ledger_time(c: Caller, engine: Engine) -> None:
    """Balances as of a moment and statements, as JSON pages and as CSV."""
    for _ in range(3):
        run(engine, c.tenant.id, "topup", user_id="uma", amount=700)
    eur = {"asset_code": "EUR"}
    now = datetime.now(UTC)
    moment = {"as_of": now.isoformat(), "known_at": now.isoformat()}
    c.get("/wallets/uma/balance", expect=200, query_string={**eur, **moment})
    c.get("/wallets/nobody/balance", expect=404, query_string={**eur, **moment})
    c.get("/system-accounts", expect=200, query_string={**eur, **moment})

    path = "/wallets/uma/statement"
    period = {**eur, "from": (now - timedelta(days=1)).isoformat()}
    page = c.get(path, expect=200, query_string={**period, "limit": 2})
    assert len(page["entries"]) == 2 and page["next_cursor"] is not None
    rest = c.get(path, expect=200, query_string={**period, "cursor": page["next_cursor"]})
    assert rest["page_opening_balance"] == 1400 and rest["next_cursor"] is None
    text_csv = {"Accept": CSV}
    csv_answer = c.call("GET", path, expect=200, query_string=period, headers=text_csv)
    assert csv_answer.get_data(as_text=True).count("\r\n") == 4
    c.get(path, expect=400, query_string={**period, "cursor": "bad!"})
    c.get("/wallets/nobody/statement", expect=404, query_string=period)
    c.get("/wallets/@topup/statement", expect=422, query_string=period)
    c.get(path, expect=422, query_string={**period, "to": period["from"]})
    c.get(path, expect=422, query_string=eur)


def expire(engine: Engine, hold_id: str) -> None:
    """Expire a hold as the relay would once its time passed (no relay runs here, and
    the sweep, like the relay's, also takes any other hold already due)."""
    with unit_of_work(engine) as work:
        work.connection.execute(
            text(
                "UPDATE holds SET expires_at = now() - interval '1 second'"
                " WHERE transaction_id = :id"
            ),
            {"id": hold_id},
        )
        assert expire_due_holds(work) >= 1


def holds(c: Caller, engine: Engine) -> None:
    """Holds, captures and voids: submitted, then applied or rejected, and listed."""
    run(engine, c.tenant.id, "topup", user_id="hana", amount=10_000)

    def hold(amount: int, **fields: Any) -> dict[str, Any]:
        return submission("hana", amount, type="hold", **fields)

    def settle(kind: str, of: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "reference_id": uuid.uuid4().hex, "original_transaction_id": of,
                **fields}  # fmt: skip

    in_a_day = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = hold(500, to_user_id="ivan", expires_in=3600, metadata={"order": 8})
    captured = c.post("/transactions", body, expect=202)
    assert (captured["status"], captured["hold"]) == ("queued", None)
    c.post("/transactions", body, expect=200)
    voided = c.post("/transactions", hold(300, expires_at=in_a_day), expect=202)
    expired = c.post("/transactions", hold(200, expires_in=60), expect=202)
    held = c.post("/transactions", hold(100), expect=202)
    too_big = c.post("/transactions", hold(10**9), expect=202)
    c.post("/transactions", hold(1, expires_in=60, expires_at=in_a_day), expect=422)
    c.post("/transactions", hold(1, to_user_id="hana"), expect=422)
    c.post("/transactions", settle("void", held["id"], amount=1), expect=422)

    # Queued captures and voids: of a hold still queued, and of no hold at all.
    capture = c.post("/transactions", settle("capture", captured["id"], amount=400), expect=202)
    assert (capture["user_id"], capture["to_user_id"]) == ("hana", "ivan")
    void = c.post("/transactions", settle("void", voided["id"]), expect=202)
    unknown = c.post("/transactions", settle("capture", str(uuid.uuid4())), expect=202)
    assert (unknown["user_id"], unknown["asset_code"], unknown["amount"]) == (None, None, None)
    holds_ = [captured, voided, expired, held, too_big]
    apply(engine, *(uuid.UUID(h["id"]) for h in holds_))
    twice = c.post("/transactions", settle("capture", captured["id"]), expect=202)
    too_much = c.post("/transactions", settle("capture", held["id"], amount=101), expect=202)
    settlements = [capture, void, unknown, twice, too_much]
    apply(engine, *(uuid.UUID(s["id"]) for s in settlements))
    expire(engine, expired["id"])

    views = {h["id"]: c.get(f"/transactions/{h['id']}", expect=200) for h in holds_}
    assert views[too_big["id"]]["result"]["code"] == "insufficient_funds"
    states = {views[h["id"]]["hold"]["status"] for h in holds_ if h is not too_big}
    assert states == set(HoldStatus)
    outcomes = [c.get(f"/transactions/{s['id']}", expect=200) for s in settlements]
    assert [o["result"] and o["result"]["code"] for o in outcomes] == [
        None, None, "hold_not_found", "hold_not_active", "capture_exceeds_hold",
    ]  # fmt: skip
    assert outcomes[2]["user_id"] is None
    c.get("/transactions", expect=200, query_string={"reference_id": body["reference_id"]})

    batch = [hold(50), settle("capture", held["id"]), settle("void", held["id"])]
    answer = c.post("/transactions/batch", {"transactions": batch}, expect=200)
    assert [r["outcome"] for r in answer["results"]] == ["accepted"] * 3

    eur = {"asset_code": "EUR"}
    listed = c.get("/wallets/hana/holds", expect=200, query_string=eur)
    assert {item["hold"]["status"] for item in listed["items"]} == set(HoldStatus)
    assert listed["next_cursor"] is None
    page = c.get("/wallets/hana/holds", expect=200, query_string={**eur, "limit": 2})
    rest = c.get(
        "/wallets/hana/holds", expect=200, query_string={**eur, "cursor": page["next_cursor"]}
    )
    assert len(page["items"]) + len(rest["items"]) == len(listed["items"])
    for status in HoldStatus:
        only = c.get("/wallets/hana/holds", expect=200, query_string={**eur, "status": status})
        assert [item["hold"]["status"] for item in only["items"]] == [status]
    c.get("/wallets/ivan/holds", expect=200, query_string=eur)
    c.get("/wallets/hana/holds", expect=400, query_string={**eur, "cursor": "bad!"})
    c.get("/wallets/nobody/holds", expect=404, query_string=eur)
    c.get("/wallets/@topup/holds", expect=422, query_string=eur)
    c.get("/wallets/hana/holds", expect=422, query_string={**eur, "status": "lost"})


def assets(c: Caller) -> None:
    gold = {"code": "GOLD", "name": "Gold", "decimal_places": 0}
    c.post("/assets", gold, expect=201, key=c.admin)
    c.post("/assets", gold, expect=409, key=c.admin)
    assert [asset["code"] for asset in c.get("/assets", expect=200)] == ["EUR", "GOLD"]


def system_accounts(c: Caller, engine: Engine) -> None:
    run(engine, c.tenant.id, "topup", user_id="erin", amount=100)
    run(engine, c.tenant.id, "topup", user_id="erin", amount=200)
    fees = {"name": "@fees", "description": "Card fees"}
    c.post("/system-accounts", fees, expect=201, key=c.admin)
    c.post("/system-accounts", fees, expect=409, key=c.admin)
    c.post("/system-accounts", {"name": "@Fees"}, expect=422, key=c.admin)
    eur = {"asset_code": "EUR"}
    listed = c.get("/system-accounts", expect=200, query_string=eur)
    assert {account["name"] for account in listed} >= {"@fees", "@topup"}
    c.get("/system-accounts", expect=200)
    c.get("/system-accounts", expect=404, query_string={"asset_code": "USD"})
    c.get("/system-accounts", expect=422, query_string={"asset_code": "eur"})
    journal = "/system-accounts/@topup/transactions"
    page = c.get(journal, expect=200, query_string={**eur, "limit": 1})
    c.get(journal, expect=200, query_string={**eur, "cursor": page["next_cursor"]})
    c.get(journal, expect=400, query_string={**eur, "cursor": "djI6MA"})
    c.get(journal, expect=422, query_string={**eur, "limit": 0})
    c.get(journal, expect=404, query_string={"asset_code": "USD"})
    c.get("/system-accounts/@nope/transactions", expect=404, query_string=eur)
    c.get("/system-accounts/nope/transactions", expect=422, query_string=eur)
    money_moves(c, engine)


def money_moves(c: Caller, engine: Engine) -> None:
    """Every shape of the transaction resource the new types render: legs (with and without
    a balance after), a refund's legs, a payout, an exchange, a journal's postings."""
    tenant = c.tenant.id
    c.post("/assets", {"code": "PTS", "name": "Points", "decimal_places": 0}, expect=201,
           key=c.admin)  # fmt: skip
    legs = [{"to_user_id": "seller", "amount": 60}, {"to_account": "@fees", "amount": 40}]
    spend = run(engine, tenant, "spend", user_id="erin", amount=100, splits=legs)
    shown = [
        spend,
        run(engine, tenant, "refund", user_id="erin", amount=30,
            original_transaction_id=uuid.UUID(spend["id"])),
        run(engine, tenant, "payout", user_id="erin", amount=10, payout_method="sepa",
            destination="DE89 ****"),
        run(engine, tenant, "hold", user_id="erin", amount=5, to_account="@payouts",
            expires_in=600),
        run(engine, tenant, "exchange", user_id="erin", amount=20, to_asset_code="PTS",
            to_amount=30),
        run(engine, tenant, "journal", reason="settle", postings=[
            {"from": "@fees", "to": "seller", "asset_code": "EUR", "amount": 1}]),
    ]  # fmt: skip
    assert [outcome["status"] for outcome in shown] == ["applied"] * len(shown)
    for outcome in shown:
        c.get(f"/transactions/{outcome['id']}", expect=200)
    c.post("/transactions", submission(type="spend", splits=[{"to_account": "@nope",
           "amount": 100}]), expect=422)  # fmt: skip


def record_attempt(engine: Engine, tenant_id: uuid.UUID, delivery_id: str) -> None:
    """A failed attempt, as the dispatcher would log it (no dispatcher runs here)."""
    with unit_of_work(engine) as work:
        work.connection.execute(
            text(
                "INSERT INTO webhook_attempts (delivery_id, tenant_id, attempt, attempted_at,"
                " status_code, latency_ms, response_body, error)"
                " VALUES (:delivery, :tenant, 1, now(), 500, 42, 'oops', NULL)"
            ),
            {"delivery": delivery_id, "tenant": tenant_id},
        )


def webhooks(c: Caller, engine: Engine) -> None:
    # A public address literal: checked without DNS, and nothing is ever sent to it here.
    url = "https://1.1.1.1/hooks"
    admin = c.admin
    created = c.post(
        "/webhook-endpoints", {"url": url, "description": "ops"}, expect=201, key=admin
    )
    assert created["secret"].startswith("whsec_")
    c.post("/webhook-endpoints", {"url": "http://127.0.0.1:9/hooks"}, expect=422, key=admin)
    base = f"/webhook-endpoints/{created['id']}"
    unknown = f"/webhook-endpoints/{uuid.uuid4()}"

    assert [e["id"] for e in c.get("/webhook-endpoints", expect=200)] == [created["id"]]
    c.get(base, expect=200)
    c.get(unknown, expect=404)
    c.get("/webhook-endpoints/not-a-uuid", expect=404)
    changes = {"description": None, "event_types": ["transaction.applied"]}
    c.patch(base, changes, expect=200, key=admin)
    c.patch(unknown, {"description": "x"}, expect=404, key=admin)
    c.patch(base, {"url": "http://10.0.0.1/hooks"}, expect=422, key=admin)
    rotated = c.post(f"{base}/rotate-secret", {"overlap_seconds": 60}, expect=200, key=admin)
    assert rotated["previous_secret_expires_at"] is not None
    c.post(f"{unknown}/rotate-secret", {}, expect=404, key=admin)

    first = c.post(f"{base}/test", expect=202)
    c.post(f"{base}/test", expect=202)
    c.post(f"{unknown}/test", expect=404)
    record_attempt(engine, c.tenant.id, first["id"])
    delivery = f"{base}/deliveries/{first['id']}"
    assert len(c.get(delivery, expect=200)["attempts"]) == 1
    c.get(f"{base}/deliveries/{uuid.uuid4()}", expect=404)
    page = c.get(f"{base}/deliveries", expect=200, query_string={"limit": 1})
    c.get(f"{base}/deliveries", expect=200, query_string={"cursor": page["next_cursor"]})
    c.get(f"{base}/deliveries", expect=400, query_string={"cursor": "bad!"})
    c.get(f"{base}/deliveries", expect=422, query_string={"status": "lost"})
    c.get(f"{unknown}/deliveries", expect=404)
    c.post(f"{delivery}/retry", expect=202)
    c.post(f"{base}/deliveries/{uuid.uuid4()}/retry", expect=404)
    since = {"since": "2020-01-01T00:00:00Z"}
    c.post(f"{base}/recover", since, expect=202)
    c.post(f"{unknown}/recover", since, expect=404)

    disabled = c.patch(base, {"enabled": False}, expect=200, key=admin)
    assert disabled["disabled_reason"] is not None
    c.post(f"{base}/test", expect=409)
    c.post(f"{delivery}/retry", expect=409)
    c.post(f"{base}/recover", since, expect=409)

    for _ in range(MAX_ENDPOINTS_PER_TENANT - 1):
        c.post("/webhook-endpoints", {"url": url}, expect=201, key=admin)
    c.post("/webhook-endpoints", {"url": url}, expect=409, key=admin)

    c.call("DELETE", base, expect=204, key=admin)
    c.call("DELETE", base, expect=404, key=admin)


def keys(c: Caller) -> None:
    created = c.post("/api-keys", {"scope": "read"}, expect=201, key=c.admin)
    assert created["api_key"].startswith(created["prefix"])
    listed = c.get("/api-keys", expect=200, key=c.admin)
    assert created["id"] in {key["id"] for key in listed}
    assert all("api_key" not in key for key in listed)
    revoked = c.call("DELETE", f"/api-keys/{created['id']}", expect=200, key=c.admin).get_json()
    assert revoked["revoked_at"] is not None
    c.call("DELETE", f"/api-keys/{uuid.uuid4()}", expect=404, key=c.admin)
    c.call("DELETE", "/api-keys/not-a-uuid", expect=404, key=c.admin)
    c.get("/api-keys", expect=401, key=created["api_key"])


def wallet_tokens(c: Caller) -> None:
    issued = c.post("/wallet-tokens", {"user_id": "alice", "scopes": ["read", "spend"]}, expect=201)
    jwks = c.get("/wallet-tokens/jwks", expect=200)
    assert [key["kid"] for key in jwks["keys"]]
    token = c.post(
        "/wallet-tokens",
        {"user_id": "alice", "scopes": ["read", "hold"], "max_amount": 10, "ttl": 60},
        expect=201,
    )["token"]
    c.post("/wallet-tokens", {"user_id": "alice", "ttl": 59}, expect=422)
    c.post("/wallet-tokens", {"user_id": "alice", "scopes": ["spend", "hold"]}, expect=422)
    c.post("/wallets/spend", submission("bob"), expect=404, key=issued["token"])
    c.post("/wallets/spend", submission(amount=1), expect=202, key=issued["token"])
    c.post("/transactions", submission(type="hold"), expect=422, key=token)
    c.post("/transactions", submission("bob", type="hold"), expect=404, key=token)
    mine = c.post("/transactions", submission(amount=5, type="hold"), expect=202, key=token)
    c.get(f"/transactions/{mine['id']}", expect=200, key=token)
    usd_only = c.post("/wallet-tokens", {"user_id": "alice", "asset_codes": ["USD"]}, expect=201)
    c.get(f"/transactions/{mine['id']}", expect=403, key=usd_only["token"])
    c.call("DELETE", f"/wallet-tokens/{issued['id']}", expect=200)
    c.call("DELETE", f"/wallet-tokens/{uuid.uuid4()}", expect=404)
    c.get(
        "/wallets/alice/balance",
        expect=401,
        key=issued["token"],
        query_string={"asset_code": "EUR"},
    )
    c.get("/wallets/alice/balance", expect=401, key="a.b.c", query_string={"asset_code": "EUR"})


def issuers_and_origins(c: Caller) -> None:
    """A merchant's own issuer of wallet tokens, and the origins its browser app uses."""
    public = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    body = {"iss": "https://m.example", "algorithms": ["ES256"], "jwks": {"keys": [public]}}
    c.post("/wallet-token-issuers", body, expect=422, key=c.admin)  # no kid
    body["jwks"]["keys"][0]["kid"] = "k1"
    made = c.post("/wallet-token-issuers", body, expect=201, key=c.admin)
    c.post("/wallet-token-issuers", body, expect=409, key=c.admin)
    assert [i["id"] for i in c.get("/wallet-token-issuers", expect=200, key=c.admin)] == [
        made["id"]
    ]
    c.call("DELETE", f"/wallet-token-issuers/{made['id']}", expect=204, key=c.admin)
    c.call("DELETE", f"/wallet-token-issuers/{made['id']}", expect=404, key=c.admin)
    origins = {"origins": ["http://127.0.0.1:5173"]}
    c.call("PUT", "/cors-origins", expect=200, json=origins, key=c.admin)
    c.call("PUT", "/cors-origins", expect=422, json={"origins": ["ftp://x"]}, key=c.admin)
    assert c.get("/cors-origins", expect=200) == origins
    token = c.post("/wallet-tokens", {"user_id": "alice"}, expect=201)["token"]
    c.get(
        "/wallets/alice/balance",
        expect=403,
        key=token,
        headers={"Origin": "http://localhost:1"},
        query_string={"asset_code": "EUR"},
    )


def audit(c: Caller) -> None:
    page = c.get("/audit-events", expect=200, query_string={"limit": 2})
    assert page["next_cursor"] is not None
    rest = c.get("/audit-events", expect=200, query_string={"cursor": page["next_cursor"]})
    assert rest["events"]
    frozen = c.get("/audit-events", expect=200, query_string={"action": "wallet.frozen"})
    assert [event["details"] for event in frozen["events"]] == [{"reason": "ticket 7"}]
    c.get("/audit-events", expect=400, query_string={"cursor": "bad!"})
    c.get("/audit-events", expect=422, query_string={"limit": 0})


def seals_listing(c: Caller, engine: Engine) -> None:
    """Two seals of the tenant's chains, read a page at a time."""
    for amount in (1, 2):
        run(engine, c.tenant.id, "topup", user_id="sealed", amount=amount)
        with unit_of_work(engine) as work:
            seal_tenant(work.connection, c.tenant.id)
    page = c.get("/seals", expect=200, query_string={"limit": 1})
    assert page["next_cursor"] is not None
    rest = c.get("/seals", expect=200, query_string={"cursor": page["next_cursor"]})
    assert rest["seals"][0]["id"] < page["seals"][0]["id"]
    c.get("/seals", expect=400, query_string={"cursor": "bad!"})
    c.get("/seals", expect=422, query_string={"limit": 0})


def event_feed(c: Caller) -> None:
    page = c.get("/events", expect=200, query_string={"limit": 2, "types": "transaction.applied"})
    assert all(event["type"] == "transaction.applied" for event in page["events"])
    if page["next_cursor"] is not None:
        c.get("/events", expect=200, query_string={"after": page["next_cursor"], "user_id": "bob"})
    c.get("/events", expect=400, query_string={"after": "bad"})
    c.get("/events", expect=422, query_string={"types": "transaction.applied,nope"})
    c.get("/events", expect=422, query_string={"limit": 1001})


def periods_and_reports(c: Caller, engine: Engine) -> None:
    """Closing periods and the reports of ledger time."""
    now = datetime.now(UTC)
    through = (now - timedelta(hours=1)).isoformat()
    waiting = submit(engine, c.tenant.id, "topup", user_id="gus", amount=70)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE transactions SET effective_at = :at WHERE id = :id"),
            {"at": now - timedelta(hours=2), "id": waiting.id},
        )
    close = "/periods/close"
    c.post(close, {"through": through}, expect=409, key=c.admin)  # not quiet
    apply(engine, waiting.id)
    closed = c.post(close, {"through": through}, expect=201, key=c.admin)
    assert closed["summary"]["EUR"]["total"] == {"balance": 0}
    c.post(close, {"through": through}, expect=409, key=c.admin)  # already closed
    c.post(close, {"through": now.isoformat()}, expect=422, key=c.admin)
    assert [p["id"] for p in c.get("/periods", expect=200)] == [closed["id"]]

    eur = {"asset_code": "EUR"}
    balances = c.get("/reports/balances", expect=200, query_string={**eur, "as_of": through})
    assert balances["total"] == {"balance": 0}
    c.get("/reports/balances", expect=200, query_string=eur)
    c.get("/reports/balances", expect=404, query_string={"asset_code": "USD"})
    c.get("/reports/balances", expect=422)
    window = {**eur, "from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()}
    moved = c.get("/reports/movements", expect=200, query_string=window)
    assert moved["buckets"]
    c.get("/reports/movements", expect=200, query_string={**window, "interval": "hour"})
    c.get("/reports/movements", expect=404, query_string={**window, "asset_code": "USD"})
    c.get("/reports/movements", expect=422, query_string={**window, "to": window["from"]})
    long = {**window, "from": (now - timedelta(days=400)).isoformat()}
    c.get("/reports/movements", expect=422, query_string=long)


def shared_errors(c: Caller, max_body_bytes: int, throttled_key: str) -> None:
    """What the document says every operation of a kind answers: authentication, scopes,
    rate limits, bodies."""
    too_large = b'{"padding": "' + b"x" * max_body_bytes + b'"}'
    narrower = {"write": c.tenant.read_api_key, "admin": c.tenant.api_key}
    # A wallet token reading only an asset no request names goes nowhere, but a
    # transaction it would read is found (and refused) first.
    wallet = {"user_id": "alice", "asset_codes": ["ZZZ"]}
    wallet_token = c.post("/wallet-tokens", wallet, expect=201)["token"]
    for method, template, operation in c.contract.operations():
        path = re.sub(r"\{\w+\}", lambda _: str(uuid.uuid4()), template).removeprefix(PREFIX)
        if operation.get("security"):
            c.call(method, path, expect=401, key=NO_KEY)
            c.call(method, path, expect=401, key="tally_unknown")
            found_first = (method, template) == ("get", f"{PREFIX}/transactions/{{transaction_id}}")
            c.call(method, path, expect=404 if found_first else 403, key=wallet_token, json={})
            scope = operation["x-required-scope"]
            if scope in narrower:
                c.call(method, path, expect=403, key=narrower[scope], json={})
            throttle(c, method, path, throttled_key)
        key = c.admin if operation.get("x-required-scope") == "admin" else None
        if method in BODY_METHODS:
            c.call(method, path, expect=415, data=b"x", content_type="text/plain", key=key)
        if "requestBody" in operation:
            json_body = {"content_type": "application/json", "key": key}
            c.call(method, path, expect=400, data=b'{"', **json_body)
            c.call(method, path, expect=413, data=too_large, **json_body)
            c.call(method, path, expect=422, json={"unexpected": 1}, key=key)


def throttle(c: Caller, method: str, path: str, key: str) -> None:
    """The throttled key may make one request per second: of three made at once, at least
    one is refused (three requests span at most two one-second windows)."""
    statuses = []
    for _ in range(3):
        response = c.api.request(method.upper(), path, key=key, json={"unexpected": 1})
        c.contract.check(response)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["RateLimit-Policy"] == '"per-key";q=1;w=1'
            return
    raise AssertionError(f"{method.upper()} {path} was never rate-limited: {statuses}")


def throttled_admin_key(engine: Engine) -> str:
    """An admin key of a tenant allowed one request per second."""
    with unit_of_work(engine) as work:
        tenant_id = create_tenant(work, "throttled")
        set_rate_limit(work, tenant_id, 1)
        return issue_api_key(work, tenant_id, "admin")["api_key"]


def database_down(c: Caller) -> None:
    for method, template, _ in c.contract.operations():
        path = re.sub(r"\{\w+\}", lambda _: str(uuid.uuid4()), template).removeprefix(PREFIX)
        c.call(method, path, expect=503)


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def app_without_database(redis_url: str) -> Iterator[Flask]:
    # Nothing listens on that port; engines connect lazily, so the app still builds.
    settings = Settings(
        webhook_secret_keys=WEBHOOK_SECRET_KEYS,
        database_url=f"postgresql://postgres@127.0.0.1:{_unused_port()}/tally",
        broker_url=redis_url,
        queue=f"tally-test-contract-{uuid.uuid4().hex[:10]}",
    )
    app = create_app(settings)
    yield app
    app.extensions["tally"].engine.dispose()


@pytest.fixture
def contract(api: Api) -> Contract:
    response = api.get("/openapi.json", key=NO_KEY)
    assert response.status_code == 200
    return Contract(response.get_json())


def test_every_operation_answers_only_as_the_document_says(
    api: Api, contract: Contract, app_without_database: Flask
) -> None:
    c = Caller(api, contract)
    c.get("/health", expect=200, key=NO_KEY)
    transactions(c, api.engine)
    wallets(c, api.engine)
    holds(c, api.engine)
    ledger_time(c, api.engine)
    assets(c)
    system_accounts(c, api.engine)
    webhooks(c, api.engine)
    keys(c)
    wallet_tokens(c)
    issuers_and_origins(c)
    audit(c)
    seals_listing(c, api.engine)
    event_feed(c)
    periods_and_reports(c, api.engine)
    shared_errors(
        c, api.client.application.config["MAX_CONTENT_LENGTH"], throttled_admin_key(api.engine)
    )
    without_database = Api(app_without_database.test_client(), api.tenant, api.engine)
    database_down(Caller(without_database, contract))

    violations = contract.violations
    assert not violations, "\n".join(violations)
    unexercised = contract.unexercised()
    assert not unexercised, "documented but never exercised:\n" + "\n".join(unexercised)


def test_every_documented_error_is_a_problem(contract: Contract) -> None:
    problem = contract.document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert set(problem["properties"]) == {*problem["required"], "errors", "instance"}
    # The one error that is not a problem: health reports each dependency when one is down.
    health_degraded = ("get", f"{PREFIX}/health", "503")
    for method, template, operation in contract.operations():
        for status, response in operation["responses"].items():
            is_error = status == "default" or int(status) >= 400
            if not is_error or (method, template, status) == health_degraded:
                continue
            assert response["content"] == {
                PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, f"{method.upper()} {template} -> {status}"


def test_the_document_describes_holds(contract: Contract) -> None:
    schemas = contract.document["components"]["schemas"]
    hold_types = {"hold", "capture", "void"}
    for name in ("Transaction", "TransactionOut", "HistoryItem"):
        assert set(schemas[name]["properties"]["type"]["enum"]) == set(TransactionType), name
        assert hold_types <= set(schemas[name]["properties"]["type"]["enum"]), name

    submitted = schemas["Transaction"]["properties"]
    assert (submitted["expires_in"]["minimum"], submitted["expires_in"]["maximum"]) == (1, 2592000)
    assert submitted["expires_at"]["format"] == "date-time"
    for field_name in ("user_id", "asset_code", "amount", "to_user_id",
                       "original_transaction_id", "expires_in", "expires_at"):  # fmt: skip
        assert submitted[field_name].get("description"), f"Transaction.{field_name}"
    answered = schemas["TransactionOut"]["properties"]
    for field_name in ("user_id", "asset_code", "amount", "expires_at", "hold"):
        assert answered[field_name].get("description"), f"TransactionOut.{field_name}"
    assert answered["hold"]["anyOf"][0] == {"$ref": "#/components/schemas/Hold"}
    hold = schemas["Hold"]
    assert set(hold["required"]) == set(hold["properties"]) == {
        "status", "amount", "captured_amount", "expires_at", "captured_by", "voided_by",
    }  # fmt: skip
    assert hold["properties"]["status"]["enum"] == list(HoldStatus)
    for field_name, described in hold["properties"].items():
        assert described.get("description"), f"Hold.{field_name}"

    operations = contract.document["paths"][f"{PREFIX}/transactions"]
    codes = operations["post"]["responses"]["422"]["x-problem-codes"]
    assert {"invalid_expiry", "missing_field", "unexpected_field", "same_wallet"} <= set(codes)
    listing = contract.document["paths"][f"{PREFIX}/wallets/{{user_id}}/holds"]["get"]
    assert listing["summary"]
    parameters = {parameter["name"]: parameter for parameter in listing["parameters"]}
    assert set(parameters) == {"asset_code", "status", "limit", "cursor"}
    assert parameters["status"]["schema"]["enum"] == list(HoldStatus)
    assert parameters["asset_code"]["required"] is True
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert page == {"$ref": "#/components/schemas/HoldPage"}
    items = schemas["HoldPage"]["properties"]["items"]
    assert items["items"] == {"$ref": "#/components/schemas/TransactionOut"}


def test_an_answer_outside_the_document_is_a_violation(contract: Contract) -> None:
    valid = {
        "id": str(uuid.uuid4()),
        "type": "topup",
        "status": "queued",
        "reference_id": "r",
        "user_id": "alice",
        "asset_code": "EUR",
        "amount": 1,
        "result": None,
        "balance_after": None,
        "metadata": {},
        "created_at": "2024-05-01T10:00:00.123456+00:00",
        "completed_at": None,
    }

    dropped = object()

    def violations(
        http_status: int = 202, content_type: str = "application/json", **changes: Any
    ) -> str:
        body = {name: v for name, v in {**valid, **changes}.items() if v is not dropped}
        answer = Answer(
            method="post",
            path=f"{PREFIX}/wallets/topup",
            status=http_status,
            content_type=content_type,
            body=json.dumps(body).encode(),
            headers={"location": f"{PREFIX}/transactions/{valid['id']}"},
        )
        return "\n".join(contract.violations_of(answer))

    assert violations() == ""
    assert "'colour' was unexpected" in violations(colour="blue")
    assert "body at /result" in violations(result={"anything": "goes"})
    assert "body at /created_at" in violations(created_at="yesterday")
    assert "body at /: 'balance_after' is a required property" in violations(balance_after=dropped)
    assert "status 418 is not documented" in violations(http_status=418)
    assert "Content-Type text/html" in violations(content_type="text/html")
    assert "header Idempotent-Replayed is missing" in violations(http_status=200)

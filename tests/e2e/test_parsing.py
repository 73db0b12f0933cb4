"""How `tally api` (granian and the serving layer) reads a request's path and headers, seen
from a client on the wire: each percent escape is decoded exactly once, every valid user id
is reachable through every wallet route and the console, and a header spelled with `_`
cannot pass for its `-` twin.

Requests go out through http.client or a raw socket, which send the path as written (no
client-side normalization). No Celery worker runs: the tests apply what they submit with the
posting engine. The serving layer is the same whatever the broker: Redis only.
"""

from __future__ import annotations

import html
import http.client
import json
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from markupsafe import escape
from sqlalchemy import Engine, text

from ledger.posting import post_transactions
from tests.conftest import TenantFixture, make_tenant
from tests.support.stack import Stack, stack_env

# The stack here runs no worker (tests/e2e/conftest.py).
pytestmark = pytest.mark.usefixtures("nothing_left_queued")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass(frozen=True)
class Server:
    host: str
    port: int

    def request(
        self,
        method: str,
        target: str,
        *,
        key: str | None = None,
        body: Any = None,
        form: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
    ) -> Answer:
        """One request with `target` sent exactly as given."""
        headers: dict[str, str] = {}
        payload: bytes | None = None
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if form is not None:
            payload = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, target, body=payload, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def raw(self, request: bytes) -> tuple[int, bytes]:
        """Send `request` byte for byte; the status and body of the answer."""
        with socket.create_connection((self.host, self.port), timeout=60) as sock:
            sock.sendall(request)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One `tally api` process, and no worker."""
    stack = Stack(
        database_url,
        redis_url,
        tmp_path_factory.mktemp("parsing-logs"),
        stack_env(database_url, redis_url),
    )
    try:
        stack.start_api()
        host, port = stack.base_url.removeprefix("http://").rsplit(":", 1)
        yield Server(host, int(port))
    finally:
        stack.stop()


def path(user_id: str) -> str:
    """A user id as one path segment: every byte but the unreserved ones escaped."""
    return quote(user_id, safe="")


def submit(server: Server, key: str, body: dict[str, Any]) -> uuid.UUID:
    answer = server.request("POST", "/api/v1/transactions", key=key, body=body)
    assert answer.status == 202, answer.body
    return uuid.UUID(answer.json()["id"])


def open_wallets(engine: Engine, server: Server, tenant: TenantFixture, *owners: str) -> None:
    """Top up each owner's EUR wallet and put a hold on it, through the served API; applied."""
    topups = [
        submit(server, tenant.api_key, {"type": "topup", "amount": 1_000, **wallet(owner)})
        for owner in owners
    ]
    holds = [
        submit(server, tenant.api_key, {"type": "hold", "amount": 10, **wallet(owner)})
        for owner in owners
    ]
    for ids in (topups, holds):  # a hold needs its wallet
        outcomes = post_transactions(engine, ids).outcomes
        assert {outcome.status for outcome in outcomes} == {"applied"}, outcomes


def wallet(owner: str) -> dict[str, str]:
    return {"user_id": owner, "asset_code": "EUR", "reference_id": uuid.uuid4().hex}


def statuses(engine: Engine, tenant: TenantFixture) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT owner, status FROM accounts WHERE tenant_id = :t AND NOT is_system"),
            {"t": tenant.id},
        )
        return {row.owner: row.status for row in rows}


# --- Finding: paths decoded twice ------------------------------------------------------------


def test_a_doubly_escaped_id_freezes_the_wallet_it_spells_not_its_decoded_twin(
    server: Server, engine: Engine, tenant: TenantFixture
) -> None:
    open_wallets(engine, server, tenant, "alice9", "%61lice9")

    answer = server.request(
        "POST",
        "/api/v1/wallets/%2561lice9/freeze",
        key=tenant.api_key,
        body={"asset_code": "EUR", "reason": "probe"},
    )

    assert answer.status == 200, answer.body
    assert answer.json()["user_id"] == "%61lice9"
    assert statuses(engine, tenant) == {"alice9": "active", "%61lice9": "frozen"}
    balance = server.request(
        "GET", "/api/v1/wallets/%2561lice9/balance?asset_code=EUR", key=tenant.api_key
    )
    assert (balance.status, balance.json()["user_id"]) == (200, "%61lice9")


def test_a_doubly_escaped_dot_dot_is_the_text_it_spells_not_the_user_dot_dot(
    server: Server, tenant: TenantFixture
) -> None:
    answer = server.request(
        "GET", "/api/v1/wallets/%252e%252e/balance?asset_code=EUR", key=tenant.api_key
    )

    assert answer.status == 404, answer.body
    assert answer.json()["code"] == "wallet_not_found"
    assert "%2e%2e" in answer.json()["detail"]


def test_an_escaped_dot_dot_is_refused_as_a_user_id(server: Server, tenant: TenantFixture) -> None:
    answer = server.request(
        "GET", "/api/v1/wallets/%2e%2e/balance?asset_code=EUR", key=tenant.api_key
    )

    assert answer.status == 422, answer.body
    assert answer.json()["code"] == "invalid_user_id"


@pytest.mark.parametrize("user_id", ["a/b", ".", "..", "alice\u00ad"])
def test_an_id_no_path_could_reach_is_refused_at_intake(
    server: Server, tenant: TenantFixture, user_id: str
) -> None:
    body = {"user_id": user_id, "asset_code": "EUR", "amount": 1, "reference_id": "r"}
    answer = server.request("POST", "/api/v1/wallets/topup", key=tenant.api_key, body=body)

    assert answer.status == 422, answer.body
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["code"] == "validation_failed"
    assert set(answer.json()["errors"]) == {"user_id"}


AWKWARD = {
    "percent": "100%",
    "escape-looking": "%61lice9",
    "slash-escape-looking": "a%2Fb",
    "doubly-escaped-dots": "%252e%252e",
    "question-mark": "what?",
    "hash": "#tag",
    "plus": "a+b",
    "query-looking": "a;b=c&d",
    "backslash": "back\\slash",
    "three-dots": "...",
    "leading-dot": ".hidden",
    "markup": "<b>&amp;'\"",
    "braille-blank": "\u2800",
    "nfc-letters": "café-Ωμέγα-名前",
    "emoji": "\U0001f600",
    "128-chars": "x" * 127 + "é",
    "128-emoji": "\U0001f600" * 128,
}


@dataclass
class Console:
    """A signed-in console session: its cookie and the CSRF token of its forms."""

    server: Server
    cookies: dict[str, str] = field(default_factory=dict)

    def sign_in(self, api_key: str) -> None:
        form = self.server.request("GET", "/console/login")
        self._keep(form)
        token = csrf_of(form.text)
        signed_in = self.server.request(
            "POST",
            "/console/login",
            form={"api_key": api_key, "csrf_token": token},
            cookies=self.cookies,
        )
        assert signed_in.status == 303, signed_in.body
        self._keep(signed_in)

    def _keep(self, answer: Answer) -> None:
        for cookie in answer.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]

    def get(self, target: str) -> Answer:
        return self.server.request("GET", target, cookies=self.cookies)

    def post(self, target: str, form: dict[str, str]) -> Answer:
        return self.server.request("POST", target, form=form, cookies=self.cookies)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]*)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def link(page: str, css_class: str) -> str:
    found = re.search(rf'class="{css_class}[^"]*" href="([^"]*)"', page)
    assert found, f"the page has no {css_class}"
    return html.unescape(found.group(1))


@pytest.fixture(scope="module")
def awkward_tenant(engine: Engine, server: Server) -> TenantFixture:
    """A tenant with an EUR wallet (1,000 and a hold of 10) for each awkward id."""
    tenant = make_tenant(engine, "parsing")
    open_wallets(engine, server, tenant, *AWKWARD.values())
    return tenant


@pytest.fixture(scope="module")
def console(server: Server, awkward_tenant: TenantFixture) -> Console:
    console = Console(server)
    console.sign_in(awkward_tenant.admin_api_key)
    return console


@pytest.mark.parametrize("name", AWKWARD)
def test_an_awkward_id_round_trips_through_every_wallet_route(
    server: Server, engine: Engine, awkward_tenant: TenantFixture, name: str
) -> None:
    user_id = AWKWARD[name]
    wallet = f"/api/v1/wallets/{path(user_id)}"
    key, admin = awkward_tenant.api_key, awkward_tenant.admin_api_key
    action = {"asset_code": "EUR", "reason": "round trip"}

    balance = server.request("GET", f"{wallet}/balance?asset_code=EUR", key=key)
    history = server.request("GET", f"{wallet}/transactions?asset_code=EUR", key=key)
    holds = server.request("GET", f"{wallet}/holds?asset_code=EUR", key=key)
    frozen = server.request("POST", f"{wallet}/freeze", key=key, body=action)
    frozen_status = statuses(engine, awkward_tenant)[user_id]
    unfrozen = server.request("POST", f"{wallet}/unfreeze", key=admin, body=action)
    limited = server.request("PATCH", wallet, key=admin, body={**action, "credit_limit": 7})

    for answer in (balance, history, holds, frozen, unfrozen, limited):
        assert answer.status == 200, (answer.status, answer.body)
    assert balance.json()["user_id"] == user_id
    assert (balance.json()["balance"], balance.json()["pending"]) == (1_000, 10)
    assert [item["amount"] for item in history.json()["items"]] == [1_000]
    assert [item["user_id"] for item in holds.json()["items"]] == [user_id]
    assert frozen.json()["user_id"] == user_id and frozen.json()["status"] == "frozen"
    assert frozen_status == "frozen"
    assert unfrozen.json()["status"] == "active"
    assert limited.json()["credit_limit"] == 7
    assert statuses(engine, awkward_tenant)[user_id] == "active"
    # No other wallet was touched on the way.
    others = {owner: status for owner, status in statuses(engine, awkward_tenant).items()}
    assert set(others.values()) == {"active"}


@pytest.mark.parametrize("name", AWKWARD)
def test_an_awkward_id_round_trips_through_the_console_wallet_page(
    server: Server, engine: Engine, console: Console, awkward_tenant: TenantFixture, name: str
) -> None:
    user_id = AWKWARD[name]

    page = console.get(f"/console/wallets/{path(user_id)}")
    assert page.status == 200, page.body
    assert f"<code>{escape(user_id)}</code>" in page.text
    # The page's own links reach the same wallet: follow its freeze link and confirm.
    confirm = console.get(link(page.text, "freeze-link"))
    assert confirm.status == 200, confirm.body
    form_action = html.unescape(
        re.search(r'<form id="confirm"[^>]* action="([^"]*)"', confirm.text)[1]
    )
    frozen = console.post(
        form_action, {"reason": "console round trip", "csrf_token": csrf_of(confirm.text)}
    )
    assert frozen.status == 303, frozen.body
    frozen_status = statuses(engine, awkward_tenant)[user_id]
    back = console.get(frozen.headers["Location"])
    unfreeze = console.get(link(back.text, "unfreeze-link"))
    unfrozen = console.post(
        html.unescape(re.search(r'<form id="confirm"[^>]* action="([^"]*)"', unfreeze.text)[1]),
        {"reason": "console round trip", "csrf_token": csrf_of(unfreeze.text)},
    )

    assert frozen_status == "frozen"
    assert back.status == 200 and f"<code>{escape(user_id)}</code>" in back.text
    assert unfrozen.status == 303, unfrozen.body
    assert statuses(engine, awkward_tenant)[user_id] == "active"


# --- Finding: a header spelled with `_` shadowing its twin ------------------------------------


def test_a_content_type_spelled_with_an_underscore_does_not_pass_the_415_check(
    server: Server, tenant: TenantFixture
) -> None:
    body = json.dumps(
        {"user_id": "alice", "asset_code": "EUR", "amount": 1, "reference_id": "r-415"}
    ).encode()
    request = (
        b"POST /api/v1/wallets/topup HTTP/1.1\r\nHost: tally\r\n"
        + f"Authorization: Bearer {tenant.api_key}\r\n".encode()
        + b"Content-Type: text/plain\r\nContent_Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )

    status, answer = server.raw(request)

    assert status == 415, answer
    assert json.loads(answer)["code"] == "unsupported_media_type"

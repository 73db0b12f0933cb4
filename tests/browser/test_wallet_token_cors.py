"""A wallet owner's browser app, in a real headless Chromium against the real stack: a
static page on one loopback origin calls the API on another with a wallet token. From an
origin its tenant allows it shows the balance and spends; from one it does not allow
(though another tenant does, so the preflight passes) the browser refuses the answer and
nothing is recorded."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.browser.conftest import Console
from tests.conftest import TenantFixture, make_tenant
from tests.integration.ledger.helpers import run
from tests.support.stack import Stack

# Chromium first: without it the module skips (or fails in CI) before starting a stack.
pytestmark = pytest.mark.usefixtures("chromium")

# The app: read the balance, then spend; each outcome (or the browser's error) goes into
# the DOM, and #done says both are over.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wallet</title></head><body>
<p>Balance: <span id="balance"></span></p>
<p>Spend: <span id="spent"></span></p>
<p>Errors: <span id="balance-error"></span> <span id="spend-error"></span></p>
<script>
const config = CONFIG;
const auth = {"Authorization": "Bearer " + config.token};
async function balance() {
  const url = config.api + "/api/v1/wallets/alice/balance?asset_code=EUR";
  const answer = await fetch(url, {headers: auth});
  const body = await answer.json();
  document.getElementById("balance").textContent = String(body.balance);
}
async function spend() {
  const answer = await fetch(config.api + "/api/v1/wallets/spend", {
    method: "POST",
    headers: {...auth, "Content-Type": "application/json"},
    body: JSON.stringify({user_id: "alice", asset_code: "EUR", amount: 250,
                          reference_id: config.reference_id}),
  });
  const body = await answer.json();
  document.getElementById("spent").textContent = answer.status + " " + body.id;
}
async function main() {
  await balance().catch((error) => {
    document.getElementById("balance-error").textContent = "balance: " + error;
  });
  await spend().catch((error) => {
    document.getElementById("spend-error").textContent = "spend: " + error;
  });
  const done = document.createElement("p");
  done.id = "done";
  document.body.appendChild(done);
}
main();
</script></body></html>
"""


class PageServer:
    """A stdlib HTTP server on loopback serving the app, with the config of the test's
    choosing written into it."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = PAGE.replace("CONFIG", json.dumps(server.config)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    with PageServer() as server:
        yield server


def open_app(console: Console, url: str, pages: PageServer, config: dict[str, Any]) -> None:
    pages.config = config
    console.browser.get(url)
    console.find("#done")


def test_a_page_on_an_allowed_origin_reads_and_spends_and_one_on_another_is_refused(
    console: Console, stack: Stack, pages: PageServer, fresh_tenant: TenantFixture, engine: Engine
):
    allowed = f"http://127.0.0.1:{pages.port}"
    refused = f"http://localhost:{pages.port}"  # another origin: another host name
    admin = stack.client(fresh_tenant.admin_api_key)
    put = admin.session.put(
        f"{stack.base_url}/api/v1/cors-origins", json={"origins": [allowed]}, timeout=60
    )
    assert put.status_code == 200, put.text
    # Another tenant allows the refused origin: the preflight passes, the request does not.
    other = make_tenant(engine, "cors")
    other_put = stack.client(other.admin_api_key).session.put(
        f"{stack.base_url}/api/v1/cors-origins", json={"origins": [refused]}, timeout=60
    )
    assert other_put.status_code == 200, other_put.text
    run(engine, fresh_tenant.id, "topup", user_id="alice", amount=1_000)
    client = stack.client(fresh_tenant.api_key)
    issued = client.post(
        "/wallet-tokens", {"user_id": "alice", "scopes": ["read", "spend"], "spend_limit": 500}
    )
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]

    config = {"api": stack.base_url, "token": token, "reference_id": uuid.uuid4().hex}
    open_app(console, f"{allowed}/", pages, config)
    assert console.text("#balance") == "1000"
    assert console.text("#balance-error") == "" and console.text("#spend-error") == ""
    status, transaction_id = console.text("#spent").split()
    assert status == "202"
    final = client.wait_final(transaction_id)
    assert final["status"] == "applied"
    balance = client.get("/wallets/alice/balance", params={"asset_code": "EUR"}).json()
    assert balance["balance"] == 750

    elsewhere = {**config, "reference_id": uuid.uuid4().hex}
    open_app(console, f"{refused}/", pages, elsewhere)
    assert console.text("#balance") == "" and console.text("#spent") == ""
    assert console.text("#balance-error").startswith("balance: TypeError")
    assert console.text("#spend-error").startswith("spend: TypeError")
    lookup = client.get("/transactions", params={"reference_id": elsewhere["reference_id"]})
    assert lookup.status_code == 404, lookup.text
    balance = client.get("/wallets/alice/balance", params={"asset_code": "EUR"}).json()
    assert balance["balance"] == 750

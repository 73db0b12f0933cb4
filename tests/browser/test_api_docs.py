"""The API reference (Swagger UI) in a real browser, against a real API: it renders the
OpenAPI document, runs under its Content-Security-Policy, loads nothing from elsewhere, and
its "Try it out" calls the live API with the key given to "Authorize"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from api.docs import CONTENT_SECURITY_POLICY
from tests.browser.conftest import PAGE_SECONDS, Console
from tests.conftest import TenantFixture
from tests.support.stack import Stack

# Chromium first: without it the module skips (or fails in CI) before starting a stack.
pytestmark = pytest.mark.usefixtures("chromium")

DOCS = "/api/v1/docs"
TOPUP = "#operations-wallets-post_api_v1_wallets_topup"
LIST_ASSETS = "#operations-assets-get_api_v1_assets"
LIVE_STATUS = f"{LIST_ASSETS} .live-responses-table tr.response td.response-col_status"
LIVE_BODY = f"{LIST_ASSETS} .live-responses-table tr.response .highlight-code pre"
# Runs before any script of the page's own: a violation of its policy (a script, a style or
# a request refused) is kept where the test can read it.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture
def docs(console: Console, stack: Stack) -> Iterator[Console]:
    """The browser on the API reference, once Swagger UI has rendered the document."""
    browser = console.browser
    added = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS}
    )
    try:
        browser.get(f"{stack.base_url}{DOCS}")
        console.find(TOPUP)
        yield console
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]}
        )


def live_status(browser: WebDriver) -> str:
    """The status of the last "Execute" of the assets operation, or "" before one."""
    shown = browser.find_elements(By.CSS_SELECTOR, LIVE_STATUS)
    return str(shown[0].text).strip() if shown else ""


def execute(docs: Console, previous: str = "") -> tuple[str, Any]:
    """Press "Execute" on the expanded assets operation: the status and JSON body shown."""
    docs.find(f"{LIST_ASSETS} button.execute").click()

    def answered(browser: WebDriver) -> str | None:
        status = live_status(browser)
        return status if status and status != previous else None

    status: str = docs.wait(answered, "the live response of GET /api/v1/assets", PAGE_SECONDS)
    return status, json.loads(docs.text(LIVE_BODY))


def authorize(docs: Console, api_key: str) -> None:
    """Give the bearer key to the "Authorize" dialog, as a person would, and close it."""
    docs.find("div.scheme-container button.authorize").click()
    docs.fill("div.modal-ux div.auth-container input", api_key)
    docs.find("div.modal-ux div.auth-container button.authorize").click()
    docs.wait(
        lambda browser: "Authorized" in docs.text("div.modal-ux div.auth-container"),
        "the Authorize dialog to take the key",
        PAGE_SECONDS,
    )
    docs.find("div.modal-ux button.btn-done").click()
    docs.wait(
        lambda browser: not browser.find_elements(By.CSS_SELECTOR, "div.modal-ux"),
        "the Authorize dialog to close",
        PAGE_SECONDS,
    )


def assert_only_same_origin(docs: Console, base_url: str) -> None:
    """Everything the page loaded or fetched came from the API; its policy refused nothing."""
    origin = urlsplit(base_url)
    assert origin.hostname == "127.0.0.1"
    loaded: list[str] = docs.browser.execute_script(
        "return [...performance.getEntriesByType('resource').map((e) => e.name),"
        " ...[...document.scripts].map((s) => s.src),"
        " ...[...document.querySelectorAll('link[href]')].map((l) => l.href)]"
    )
    assert loaded
    for url in loaded:
        assert urlsplit(url)[:2] == origin[:2], url
    assert docs.browser.execute_script("return window.cspViolations") == []


def test_the_page_is_served_under_its_content_security_policy(stack: Stack):
    response = requests.get(f"{stack.base_url}{DOCS}", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    health = requests.get(f"{stack.base_url}/api/v1/health", timeout=10)
    assert "Content-Security-Policy" not in health.headers


def test_swagger_ui_renders_the_operations_of_the_document(docs: Console, stack: Stack):
    assert docs.browser.title == "Tally API"
    assert docs.text("#operations-tag-wallets").startswith("wallets")
    assert docs.text(f"{TOPUP} .opblock-summary-method") == "POST"
    topup_path = docs.find(f"{TOPUP} .opblock-summary-path").get_attribute("data-path")
    assert topup_path == "/api/v1/wallets/topup"
    for tag in ("transactions", "assets", "webhooks", "keys", "audit"):
        assert docs.has(f"#operations-tag-{tag}"), tag
    # Operations behind a key show a lock: the document declares the bearer scheme.
    assert docs.has(f"{TOPUP} button.authorization__btn")
    assert docs.has("div.scheme-container button.authorize")
    docs.screenshot("api-docs")
    assert_only_same_origin(docs, stack.base_url)


def test_try_it_out_calls_the_api_with_the_authorized_key(
    docs: Console, stack: Stack, tenant: TenantFixture
):
    docs.find(f"{LIST_ASSETS} button.opblock-summary-control").click()
    docs.find(f"{LIST_ASSETS} button.try-out__btn").click()

    status, refused = execute(docs)
    assert (status, refused["code"]) == ("401", "missing_api_key")

    authorize(docs, tenant.api_key)
    status, assets = execute(docs, previous=status)

    assert status == "200"
    assert [(a["code"], a["decimal_places"]) for a in assets] == [("EUR", 2)]
    assert f"Authorization: Bearer {tenant.api_key}" in docs.text(f"{LIST_ASSETS} .curl-command")
    docs.screenshot("api-docs-try-it-out")
    assert_only_same_origin(docs, stack.base_url)

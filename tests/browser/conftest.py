"""Fixtures for browser tests: a real stack on Redis, a tenant with a key of each scope, and
a headless Chromium driven by Selenium through the operator console."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import Engine

from tally.webhook_receiver import WebhookReceiver
from tests.conftest import TenantFixture, assert_invariants, backend_missing, make_tenant
from tests.support.stack import Stack, stack_env

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage")
WINDOW = (1280, 1000)
# Long enough for a loaded CI machine to render a page; a wait that needs more is a bug.
PAGE_SECONDS = 15.0
# Past this a full-page screenshot is cut: a runaway table should not make a huge PNG.
MAX_SHOT_HEIGHT = 6000
SESSION_COOKIE = "tally_console"
# How much of a page a failed wait quotes.
SHOWN_CHARS = 600


@pytest.fixture(scope="module")
def stack(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """API, one worker and its relay on Redis; a system fault fails a transaction at its
    first attempt, so a test can make a failed one to requeue."""
    env = stack_env(database_url, redis_url, TALLY_MAX_APPLY_ATTEMPTS="1")
    stack = Stack(database_url, redis_url, tmp_path_factory.mktemp("browser-stack-logs"), env)
    try:
        stack.start_api()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()


@contextmanager
def new_tenant(engine: Engine) -> Iterator[TenantFixture]:
    """A tenant with a EUR asset and an admin, a write and a read key; its ledger
    invariants are checked after."""
    made = make_tenant(engine, "console")
    yield made
    assert_invariants(engine, made.id)


@pytest.fixture(scope="module")
def tenant(engine: Engine) -> Iterator[TenantFixture]:
    """The module's tenant: the tests share it, each with users of its own."""
    with new_tenant(engine) as tenant:
        yield tenant


@pytest.fixture
def fresh_tenant(engine: Engine) -> Iterator[TenantFixture]:
    """A tenant of one test's own, for numbers no other test adds to."""
    with new_tenant(engine) as tenant:
        yield tenant


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def endpoint(stack: Stack, tenant: TenantFixture, receiver: WebhookReceiver) -> dict[str, Any]:
    """The tenant's webhook endpoint at the receiver: every later transaction has a delivery."""
    response = stack.client(tenant.admin_api_key).post(
        "/webhook-endpoints", {"url": receiver.url("console"), "description": "console tests"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$TALLY_TEST_ARTIFACTS/console when CI collects artifacts, else under the basetemp."""
    root = os.environ.get("TALLY_TEST_ARTIFACTS")
    path = (
        Path(root) / "console" if root else tmp_path_factory.getbasetemp() / "console-screenshots"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    """One headless Chromium for the module: starting one per test would double its time."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            backend_missing(f"{path} is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: WebDriver) -> Iterator[WebDriver]:
    """The module's Chromium, signed out: each test starts with no cookies at all."""
    yield chromium
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
    chromium.get("about:blank")


def loaded(browser: WebDriver) -> bool:
    return bool(browser.execute_script("return document.readyState") == "complete")


class Console:
    """A browser on one stack's operator console: pages by path, forms, screenshots."""

    def __init__(self, browser: WebDriver, base_url: str, screenshot_dir: Path) -> None:
        self.browser = browser
        self.base_url = base_url
        self.screenshot_dir = screenshot_dir

    def url(self, path: str) -> str:
        return f"{self.base_url}/console{path}"

    @property
    def path(self) -> str:
        """The path of the page the browser shows (without its query), from /console on."""
        return urlsplit(self.browser.current_url).path

    def visit(self, path: str) -> None:
        self.browser.get(self.url(path))

    def wait(
        self,
        condition: Callable[[WebDriver], Any],
        what: str,
        timeout: float,
        ignoring: tuple[type[Exception], ...] = (),
    ) -> Any:
        try:
            return WebDriverWait(
                self.browser, timeout, poll_frequency=0.1, ignored_exceptions=ignoring
            ).until(condition)
        except TimeoutException:
            # The page the browser was left on says why, more often than not.
            shown = self.browser.find_element(By.TAG_NAME, "body").text[:SHOWN_CHARS]
            raise AssertionError(
                f"timed out waiting for {what}; the page shows:\n{shown}"
            ) from None

    def find(self, css: str) -> WebElement:
        """The element, once the page has it."""
        located = expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
        element: WebElement = self.wait(located, f"{css} on {self.path}", PAGE_SECONDS)
        return element

    def find_all(self, css: str) -> list[WebElement]:
        return list(self.browser.find_elements(By.CSS_SELECTOR, css))

    def has(self, css: str) -> bool:
        return bool(self.find_all(css))

    def text(self, css: str) -> str:
        return str(self.find(css).text).strip()

    def click(self, css: str) -> None:
        """Click a link or a form's button and wait until the next page has replaced this one."""
        self._leave(css, lambda element: element.click())

    def press_enter(self, css: str) -> None:
        """Submit a field's form as a person would, with Enter, and wait for the next page."""
        self._leave(css, lambda element: element.send_keys(Keys.ENTER))

    def _leave(self, css: str, action: Callable[[WebElement], None]) -> None:
        page = self.browser.find_element(By.TAG_NAME, "html")
        action(self.find(css))
        # While the old document goes, Chromium may answer for its nodes with an inspector
        # error instead of "stale": look again until it says stale.
        self.wait(
            expected_conditions.staleness_of(page),
            f"the page after {css}",
            PAGE_SECONDS,
            ignoring=(WebDriverException,),
        )
        self.wait(
            loaded, f"the page after {css} to load", PAGE_SECONDS, ignoring=(WebDriverException,)
        )

    def fill(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    def choose(self, css: str, option: str) -> None:
        """Pick the option of a select by the text it shows."""
        Select(self.find(css)).select_by_visible_text(option)

    def sign_in(self, api_key: str) -> None:
        self.visit("/login")
        self.fill("form#login input[name=api_key]", api_key)
        self.click("button#sign-in")
        self.find("span#whoami")

    def reload_until(self, css: str, text: str, timeout: float = 30.0) -> None:
        """Reload until an element `css` reads `text`: no script updates a console page."""

        def shown(browser: WebDriver) -> bool:
            browser.refresh()
            return any(e.text.strip() == text for e in browser.find_elements(By.CSS_SELECTOR, css))

        self.wait(shown, f"{css} to show {text!r} on {self.path}", timeout)

    def session_cookie(self) -> str:
        cookie = self.browser.get_cookie(SESSION_COOKIE)
        assert cookie is not None, f"no {SESSION_COOKIE} cookie on {self.path}"
        return str(cookie["value"])

    def csrf_token(self) -> str:
        """The CSRF token of this page's forms (the sign-out form is on every page)."""
        token = self.find("form#sign-out input[name=csrf_token]").get_attribute("value")
        assert token, f"no csrf_token on {self.path}"
        return str(token)

    def screenshot(self, name: str) -> Path:
        """Save the whole page, not just the window, as `<name>.png`."""
        size = self.browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {
            "x": 0,
            "y": 0,
            "width": max(size["width"], 1),
            "height": min(max(size["height"], 1), MAX_SHOT_HEIGHT),
            "scale": 1,
        }
        shot = self.browser.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path = self.screenshot_dir / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@pytest.fixture
def console(browser: WebDriver, stack: Stack, screenshot_dir: Path) -> Console:
    return Console(browser, stack.base_url, screenshot_dir)

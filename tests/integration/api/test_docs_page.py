"""The API reference page (Swagger UI) and its assets: public, same-origin, under a strict
Content-Security-Policy that no other API route carries."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.docs import CONTENT_SECURITY_POLICY

DOCS = "/api/v1/docs"
ASSETS = f"{DOCS}/assets/"
OPENAPI = "/api/v1/openapi.json"


class Page(HTMLParser):
    """What a page loads: its scripts (and whether any is inline), stylesheets, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[str] = []
        self.inline_scripts = 0
        self.openapi_url: str | None = None
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self._in_script = True
            if attributes.get("src"):
                self.scripts.append(str(attributes["src"]))
            else:
                self.inline_scripts += 1
        elif tag == "link":
            self.links.append(str(attributes.get("href")))
        elif attributes.get("id") == "swagger-ui":
            self.openapi_url = attributes.get("data-openapi-url")
        if any(name.startswith("on") for name in attributes):
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """No Authorization header at all: the page is for anyone."""
    return app.test_client()


def parse(client: FlaskClient) -> Page:
    response = client.get(DOCS)
    assert response.status_code == 200, response.text
    page = Page()
    page.feed(response.text)
    return page


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for directive in filter(None, (part.strip() for part in policy.split(";"))):
        name, *sources = directive.split()
        parsed[name] = sources
    return parsed


def test_the_page_is_public_and_carries_a_strict_policy(client: FlaskClient):
    response = client.get(DOCS)

    assert response.status_code == 200, response.text
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = directives(CONTENT_SECURITY_POLICY)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert '<div id="swagger-ui"' in response.text


def test_the_page_loads_only_same_origin_files_and_no_inline_script(client: FlaskClient):
    page = parse(client)

    assert page.inline_scripts == 0
    assert page.scripts == [f"{ASSETS}swagger-ui-bundle.js", f"{ASSETS}init.js"]
    assert f"{ASSETS}swagger-ui.css" in page.links
    for url in (*page.scripts, *page.links):
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), url
        assert parts.path.startswith(ASSETS), url
    assert page.openapi_url == OPENAPI


def test_every_asset_the_page_names_is_served_without_a_key(client: FlaskClient):
    page = parse(client)
    expected = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}

    for url in (*page.scripts, *page.links):
        response = client.get(url)
        assert response.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert response.mimetype == expected[suffix], url
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, url
        assert response.headers["X-Content-Type-Options"] == "nosniff", url
        response.close()


def test_the_initialiser_starts_swagger_ui_on_the_documents_url(client: FlaskClient):
    response = client.get(f"{ASSETS}init.js")

    assert response.status_code == 200
    script = response.get_data(as_text=True)
    assert "SwaggerUIBundle(" in script
    assert "openapiUrl" in script
    assert "validatorUrl: null" in script  # the default would reach a public validator


@pytest.mark.parametrize(
    "name",
    [
        "index.html",  # the bundle's own page: an inline script
        "oauth2-redirect.html",
        "swagger-initializer.js",  # the bundle's initialiser, for its demo document
        "..%2F__init__.py",
        "..%2F..%2Fpyproject.toml",
        "%2Fetc%2Fpasswd",
        "nothing.js",
    ],
)
def test_nothing_else_is_served_from_the_assets(client: FlaskClient, name: str):
    response = client.get(f"{ASSETS}{name}")

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_other_routes_carry_no_docs_policy(client: FlaskClient):
    for path in ("/api/v1/health", OPENAPI):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "Content-Security-Policy" not in response.headers, path


def test_the_document_declares_the_bearer_scheme_the_authorize_button_uses(
    client: FlaskClient,
):
    document = client.get(OPENAPI).get_json()

    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["type"] == "http"
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert document["paths"]["/api/v1/assets"]["get"]["security"] == [{"bearerAuth": []}]
    # No `servers`: Swagger UI sends "Try it out" to the page's own origin.
    assert "servers" not in document

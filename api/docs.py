"""The interactive API reference: Swagger UI at /api/v1/docs, its assets served by the API
itself from the swagger-ui-bundle package (no CDN), under a strict Content-Security-Policy."""

from __future__ import annotations

from html import escape
from pathlib import Path

from flask import Flask, Response, abort, send_from_directory, url_for
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/api/v1/docs"
DOCS_ENDPOINT = "docs"
ASSETS_ENDPOINT = "docs_assets"
OWN_ASSETS_DIR = Path(__file__).parent / "docs_static"
# send_from_directory needs a real directory: the package is installed as plain files.
BUNDLE_DIR = Path(str(swagger_ui_path))
# Only what the page loads (and the maps a browser's developer tools ask for): the bundle's
# own index.html and oauth2-redirect.html carry inline scripts and are never served.
ASSETS: dict[str, Path] = {
    "init.js": OWN_ASSETS_DIR,
    "swagger-ui-bundle.js": BUNDLE_DIR,
    "swagger-ui-bundle.js.map": BUNDLE_DIR,
    "swagger-ui.css": BUNDLE_DIR,
    "swagger-ui.css.map": BUNDLE_DIR,
    "index.css": BUNDLE_DIR,
    "favicon-32x32.png": BUNDLE_DIR,
    "favicon-16x16.png": BUNDLE_DIR,
}
# Scripts only from files the API serves (the initialiser is one: no inline script), and
# requests only to this origin. Swagger UI sets inline styles and draws icons as data: URIs.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-ancestors 'none';"
    " base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Tally API</title>
<link rel="stylesheet" href="{swagger_css}">
<link rel="stylesheet" href="{index_css}">
<link rel="icon" type="image/png" href="{favicon_32}" sizes="32x32">
<link rel="icon" type="image/png" href="{favicon_16}" sizes="16x16">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{swagger_js}"></script>
<script src="{init_js}"></script>
</body>
</html>
"""


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _asset_url(filename: str) -> str:
    return escape(url_for(ASSETS_ENDPOINT, filename=filename))


def docs_page() -> Response:
    """Swagger UI, reading the API's OpenAPI document."""
    page = PAGE.format(
        swagger_css=_asset_url("swagger-ui.css"),
        index_css=_asset_url("index.css"),
        favicon_32=_asset_url("favicon-32x32.png"),
        favicon_16=_asset_url("favicon-16x16.png"),
        openapi_url=escape(url_for("api-docs.openapi_json")),
        swagger_js=_asset_url("swagger-ui-bundle.js"),
        init_js=_asset_url("init.js"),
    )
    return _secured(Response(page, mimetype="text/html"))


def docs_asset(filename: str) -> Response:
    """One of the page's scripts, stylesheets or icons; 404 for any other name."""
    directory = ASSETS.get(filename)
    if directory is None:
        abort(404)
    return _secured(send_from_directory(directory, filename))


def init_app(app: Flask) -> None:
    """Serve the page at /api/v1/docs and its assets; both are public (api/guard.py)."""
    app.add_url_rule(DOCS_PATH, endpoint=DOCS_ENDPOINT, view_func=docs_page, methods=["GET"])
    app.add_url_rule(
        f"{DOCS_PATH}/assets/<filename>",
        endpoint=ASSETS_ENDPOINT,
        view_func=docs_asset,
        methods=["GET"],
    )

"""The operator console at /console: find a payment by any id, see its whole story, and fix
it, in a browser. Pages render on the server (Jinja templates, inline SVG charts) and use
no JavaScript; every action calls the ledger function the API route calls, authorized by
that route's own scope (api/console/blueprint.py)."""

from __future__ import annotations

from flask import Flask

from api.console import (  # noqa: F401  (each module adds its pages to the blueprint)
    audit,
    formatting,
    keys,
    overview,
    signin,
    system_accounts,
    transactions,
    wallet_tokens,
    wallets,
    webhooks,
)
from api.console.blueprint import bp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

"""URL converters of names in paths: one path segment each, documented with the rule of the
name (a user id, a system account's name) that the views judge."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api
from werkzeug.routing import BaseConverter

from api.fields import user_id_property
from ledger.vocabulary import SYSTEM_ACCOUNT_NAME


class UserIdConverter(BaseConverter):
    """A wallet owner's id in a path. It matches any one segment; the views judge it against
    the rule and answer `422 invalid_user_id`, rather than a bare 404 for a broken id."""


def _user_id_parameter(converter: UserIdConverter) -> dict[str, Any]:
    return {"type": "string", **user_id_property()}


class SystemAccountConverter(BaseConverter):
    """A system account's name in a path (`@fees`): any one segment, judged by the views
    (`422 invalid_system_account_name`)."""


def _system_account_parameter(converter: SystemAccountConverter) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": f"^{SYSTEM_ACCOUNT_NAME}$",
        "description": "A system account's name: `@` and 1-32 of `a-z`, `0-9` and `_`.",
    }


def init_app(app: Flask, api: Api) -> None:
    """Register the converters with the app's router and the OpenAPI document."""
    app.url_map.converters["user_id"] = UserIdConverter
    api.register_converter(UserIdConverter, _user_id_parameter)
    app.url_map.converters["system_account"] = SystemAccountConverter
    api.register_converter(SystemAccountConverter, _system_account_parameter)

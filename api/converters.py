"""The `user_id` URL converter: one path segment, documented with the user-id rule."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api
from werkzeug.routing import BaseConverter

from api.fields import user_id_property


class UserIdConverter(BaseConverter):
    """A wallet owner's id in a path. It matches any one segment; the views judge it against
    the rule and answer `422 invalid_user_id`, rather than a bare 404 for a broken id."""


def _user_id_parameter(converter: UserIdConverter) -> dict[str, Any]:
    return {"type": "string", **user_id_property()}


def init_app(app: Flask, api: Api) -> None:
    """Register the converter with the app's router and the OpenAPI document."""
    app.url_map.converters["user_id"] = UserIdConverter
    api.register_converter(UserIdConverter, _user_id_parameter)

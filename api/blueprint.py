"""The Blueprint every route module uses: flask-smorest's, with a stricter JSON parser."""

from __future__ import annotations

import json
from typing import Any

import flask
import flask_smorest
from webargs.flaskparser import FlaskParser


class JsonBodyParser(FlaskParser):
    """webargs' parser, treating every unparseable body as malformed JSON (400), not a 500.

    Python's JSON decoder raises plain ValueError for an integer of more than 4,300 digits
    and RecursionError for absurd nesting; webargs only expects JSONDecodeError.
    """

    def _raw_load_json(self, req: flask.Request) -> Any:
        try:
            return super()._raw_load_json(req)
        except json.JSONDecodeError:
            raise
        except (ValueError, RecursionError) as error:
            raise json.JSONDecodeError(str(error), "<body>", 0) from None


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonBodyParser()

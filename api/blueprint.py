"""The Blueprint every route module uses: flask-smorest's, with a stricter JSON parser and
problem+json error responses in the OpenAPI document."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from copy import deepcopy
from typing import Any, TypeVar

import flask
import flask_smorest
import orjson
from apispec import APISpec
from marshmallow import missing
from webargs.flaskparser import FlaskParser, is_json_request

from api import contract
from api.permissions import BATCH, READ_METHODS, SINGLE
from api.respond import amounts_from_strings, wants_string_amounts
from ledger.vocabulary import Scope

View = TypeVar("View", bound=Callable[..., Any])
# 19 digits in a row: maybe an integer past 2**63 (a digit run inside a string only costs
# the slower parser).
WIDE_NUMBER = re.compile(rb"[0-9]{19}")


class JsonBodyParser(FlaskParser):
    """webargs' parser, treating every unparseable body as malformed JSON (400), not a 500.

    Python's JSON decoder raises plain ValueError for an integer of more than 4,300 digits
    and RecursionError for absurd nesting; webargs only expects JSONDecodeError.
    """

    def _raw_load_json(self, req: flask.Request) -> Any:
        body = self._load_json(req)
        if wants_string_amounts() and body is not missing:
            return amounts_from_strings(body)
        return body

    def _load_json(self, req: flask.Request) -> Any:
        if is_json_request(req):
            data = req.get_data(cache=True)
            # orjson first (a fifth of the stdlib's cost), unless the body may hold an
            # integer beyond 64 bits: orjson reads one as a float, and money would lose
            # its last digits. What orjson refuses (NaN) goes to the stdlib too.
            if WIDE_NUMBER.search(data) is None:
                with contextlib.suppress(orjson.JSONDecodeError):
                    return orjson.loads(data)
        try:
            return super()._raw_load_json(req)
        except json.JSONDecodeError:
            raise
        except (ValueError, RecursionError) as error:
            raise json.JSONDecodeError(str(error), "<body>", 0) from None


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonBodyParser()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Last: it replaces flask-smorest's JSON error responses, which Tally never sends.
        self._prepare_doc_cbks.append(self._prepare_problem_doc)

    def route(self, rule: str, **options: Any) -> Callable[[View], View]:
        """flask-smorest's route; a rule with a `<uuid:...>` part also documents the 404
        `not_found` that routing answers for a path whose id is not a UUID."""
        register = super().route(rule, **options)
        if "<uuid:" not in rule:
            return register

        def decorator(view: View) -> View:
            for method in getattr(view, "methods", None) or ():
                handler = getattr(view, method.lower())
                setattr(view, method.lower(), self.problem(404, "not_found")(handler))
            return register(view)

        return decorator

    @staticmethod
    def problem(status: int, *codes: str) -> Callable[[View], View]:
        """Document that the view answers `status` as problem+json with one of `codes`."""

        def decorator(view: View) -> View:
            apidoc = deepcopy(getattr(view, "_apidoc", {}))
            apidoc.setdefault("problems", {}).setdefault(status, []).extend(codes)
            view._apidoc = apidoc  # type: ignore[attr-defined]
            return view

        return decorator

    @staticmethod
    def requires(scope: Scope) -> Callable[[View], View]:
        """The key scope the view needs (api/permissions.py); documented in the OpenAPI."""

        def decorator(view: View) -> View:
            apidoc = deepcopy(getattr(view, "_apidoc", {}))
            apidoc["required_scope"] = scope
            view._apidoc = apidoc  # type: ignore[attr-defined]
            view._required_scope = scope  # type: ignore[attr-defined]
            return view

        return decorator

    @staticmethod
    def rate_policy(name: str) -> Callable[[View], View]:
        """Count the view against the named rate-limit policy too (api/rate_limits.py)."""

        def decorator(view: View) -> View:
            view._rate_policy = name  # type: ignore[attr-defined]
            return view

        return decorator

    @staticmethod
    def submits_batch(view: View) -> View:
        """Mark the view as submitting many transactions (the guard lets its own statement
        confirm the caller's key, as for single submissions)."""
        view._submission = BATCH  # type: ignore[attr-defined]
        return view

    def submission_responses(self, schema: Any) -> Callable[[View], View]:
        """What every single-submission route answers (docs/api.md#idempotency): 202, or
        200 replaying the answer to an earlier submission of the same `reference_id` and
        body. It marks the view as a submission for the guard too."""
        accepted = self.response(202, schema, headers={"Location": "Location"})
        replayed = self.alt_response(
            200,
            schema=schema,
            description="The same `reference_id` and body were submitted before: that answer.",
            headers={"Location": "Location", "Idempotent-Replayed": "Idempotent-Replayed"},
            success=True,
        )
        unknown_asset = self.problem(404, "asset_not_found")
        reused = self.problem(409, "idempotency_key_reused")
        invalid = self.problem(422, "invalid_metadata", "metadata_too_large", *contract.DATED)

        def decorator(view: View) -> View:
            for document in (invalid, reused, unknown_asset, replayed, accepted):
                view = document(view)
            view._submission = SINGLE  # type: ignore[attr-defined]
            return view

        return decorator

    def register_views_in_doc(
        self, api: flask_smorest.Api, app: flask.Flask, spec: APISpec, **kwargs: Any
    ) -> None:
        contract.prepare_document(spec, api.ma_plugin)
        super().register_views_in_doc(api, app, spec, **kwargs)

    @staticmethod
    def _prepare_problem_doc(
        doc: dict[str, Any], doc_info: dict[str, Any], *, method: str, **_: Any
    ) -> dict[str, Any]:
        # `@blp.doc(security=[])` marks a public operation, as in the document itself.
        authenticated = doc_info.get("manual_doc", {}).get("security") != []
        scope = doc_info.get("required_scope") or (
            Scope.READ if method.upper() in READ_METHODS else Scope.WRITE
        )
        problems = contract.operation_problems(
            method=method,
            authenticated=authenticated,
            json_body="requestBody" in doc,
            arguments="arguments" in doc_info,
            declared=doc_info.get("problems", {}),
            scope=scope,
        )
        responses = doc.setdefault("responses", {})
        for status, codes in problems.items():
            # Only flask-smorest's own error reference (a name) may be replaced.
            if isinstance(responses.get(status), dict):
                raise ValueError(f"{method} answers {status} both as a problem and otherwise")
            responses[status] = contract.problem_response(status, codes)
        responses["default"] = contract.default_response()
        doc["responses"] = dict(sorted(responses.items(), key=lambda item: str(item[0])))
        if authenticated:
            doc["security"] = [{contract.BEARER_AUTH: []}]
            doc["x-required-scope"] = str(scope)
        return doc

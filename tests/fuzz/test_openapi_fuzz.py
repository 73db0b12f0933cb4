"""schemathesis against the live app's OpenAPI document: every operation, with valid and
with bad keys. Any 5xx, any answer whose status, content type, headers or body the
document does not describe, fails the run.

Bodies that name a webhook URL get a public address literal instead of what was
generated: registration then needs no DNS, and no dispatcher runs here to send to it.
Run it alone with `bash scripts/test tests/fuzz` (TALLY_FUZZ_EXAMPLES sets the examples per
operation and key; CI runs the default).
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("TALLY_FUZZ_EXAMPLES", "30"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
PUBLIC_URL = "https://1.1.1.1/fuzzed"


def _call(case: schemathesis.Case, key: str) -> None:
    if isinstance(case.body, dict) and "url" in case.body:
        case.body["url"] = PUBLIC_URL
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    case.call_and_validate(headers=headers, checks=CHECKS)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


def fuzz_every_operation(api_schema: schemathesis.BaseSchema, key_names: list[str], keys) -> int:
    """Run the generated cases of every operation with each named key; the operations run."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation in operations:
        # Valid requests, and requests that break the document on purpose.
        @given(
            case=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            )
        )
        @FUZZ
        def fuzz(case: schemathesis.Case) -> None:
            for name in key_names:
                _call(case, keys.get(name, ""))

        try:
            fuzz()
        except BaseException as error:
            error.add_note(f"while fuzzing {operation.label}")
            raise
    return len(operations)


def test_with_an_admin_key_every_answer_is_documented(api_schema, keys):
    assert fuzz_every_operation(api_schema, ["admin"], keys) >= 25


def test_with_narrower_bad_or_no_keys_every_answer_is_documented(api_schema, keys):
    names = ["write", "read", "unknown", "malformed", "none"]
    assert fuzz_every_operation(api_schema, names, keys) >= 25

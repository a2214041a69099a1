"""The API keeps its word: schemathesis generates requests for every operation of
/api-docs.json (valid ones and, for the negative-data check, invalid ones) and checks each
answer against the document — no server error, documented status codes, content types,
headers and bodies conforming to their schemas, invalid data rejected — once as a user and
once as an admin."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from mysoulmate.runtime.server import create_server_app
from schemathesis.checks import positive_data_acceptance

from tests.support.helpers import auth_header

# Schema-valid requests the API may still refuse, each for a reason JSON Schema cannot state:
SEMANTIC_REFUSALS = {
    # the event-time window moves with the clock: [2000-01-01, now + MAX_FUTURE_SECONDS]
    "timestamp_too_old",
    "timestamp_in_future",
    "timestamp_out_of_range",
    # a cursor is opaque: only the ones the API issued (for the same query) are valid
    "invalid_cursor",
    # `from` after `to`, or a range longer than allowed: a relation between two parameters
    "invalid_range",
    "range_too_long",
    # i18n `params` is JSON inside a query string; keys and locales must exist in the catalogs
    "invalid_params",
    "unknown_key",
    "unknown_locale",
    "unknown_namespace",
    # a funnel window such as `7d` must be between 1 s and 90 days
    "invalid_window",
    # a size limit in bytes (32 KiB of properties) that JSON Schema cannot count
    "validation_error",
}


@pytest.fixture
def api_schema(monkeypatch: pytest.MonkeyPatch) -> schemathesis.BaseSchema:
    # The per-caller limits answer 429 (documented) but would hide everything else.
    monkeypatch.setenv("RATE_LIMIT_INGEST_PER_SECOND", "0")
    monkeypatch.setenv("RATE_LIMIT_READ_PER_SECOND", "0")
    from mysoulmate.runtime.backends import reset_backends

    reset_backends()
    return schemathesis.openapi.from_asgi("/api-docs.json", create_server_app())


# Under pytest-xdist both tests run on one worker: schemathesis caches its coverage-phase draws
# per process (boundary-length strings from the name patterns take most of a minute), so the
# second test reuses what the first drew instead of paying for it again on another worker.
# That minute is CPU: beside the other worker's tests it can take three, hence the timeout.
pytestmark = [pytest.mark.xdist_group("schemathesis-coverage-cache"), pytest.mark.timeout(600)]

schema = schemathesis.pytest.from_fixture("api_schema")
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure here is a regression, not luck
    suppress_health_check=list(HealthCheck),
)


def call_and_validate(case: schemathesis.Case, headers: dict[str, str]) -> None:
    """Every default check; positive-data acceptance by hand, to allow the refusals above
    (and nothing else) for schema-valid requests."""
    positive = case.meta is not None and case.meta.generation.mode.name == "POSITIVE"
    generated = {name.lower() for name in (case.headers or {})}
    if not positive and "authorization" not in generated:
        # A negative case without the security header tests that the API refuses it: send
        # it as generated, without our token, and the check expects the 401.
        headers = {}
    response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
    if positive and response.status_code in (400, 422):
        code = response.json()["error"]["code"]
        assert code in SEMANTIC_REFUSALS, f"schema-valid request refused: {response.text}"
        if code == "validation_error":
            details = response.json()["error"]["details"]
            # A batch's messages are validated one by one: the schema describes what they
            # may hold but cannot refuse them; a batch none of whose messages is valid is.
            kinds = {d["type"] for d in details if not d["field"].startswith("batch[")}
            # A perf measurement's largest value depends on its metric (render ≤ 10 min, fps
            # ≤ 1,000…): the schema states the widest bound only.
            allowed = {"too_large", "perf_value_out_of_range"}
            assert kinds <= allowed, f"schema-valid request refused: {response.text}"


@schema.parametrize()
@EXAMPLES
def test_every_operation_as_a_user(case: schemathesis.Case) -> None:
    call_and_validate(case, auth_header("ann"))


@schema.parametrize()
@EXAMPLES
def test_every_operation_as_an_admin(case: schemathesis.Case) -> None:
    call_and_validate(case, auth_header("ops", "admin"))

"""Schemathesis over the server's OpenAPI document: requests generated from the document
(a bounded, repeatable number per operation) against the app with every check, so each
answer has a documented status, body and headers and the server never fails with a 500.

All checks but one: ``positive_data_acceptance`` wants a 2xx for every request the document
allows, and no document can say "a decodable image" or "an image_id this server has seen",
so random base64, bytes and ids are rightly answered 400/404/422."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402 (schemathesis brings hypothesis)
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from app.predict.classical.predictor import ClassicalPredictor  # noqa: E402
from app.server.app import create_app  # noqa: E402
from app.server.settings import ServerSettings  # noqa: E402

EXAMPLES = 12  # per operation and phase: enough to find an undocumented answer, still quick

# GrabCut stands in for the model (the document is the same); the model thread starts only
# when a request needs it
app = create_app(ClassicalPredictor(), ServerSettings(max_request_bytes=1 << 20,
                                                      request_timeout_s=20.0))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented(case) -> None:
    case.call_and_validate(excluded_checks=[positive_data_acceptance])

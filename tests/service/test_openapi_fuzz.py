"""schemathesis against the app's own OpenAPI document: no generated request gives a server error,
and every answer is documented (status code, media type, body schema, headers).

Bounded: 30 examples per operation, driven by Hypothesis directly (one test, every operation), so
the run takes well under a minute on two shared cores. Requests carry a valid API key so writes are
fuzzed past the key check.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.main import create_app
from service.settings import ApiSettings
from tests.service.conftest import API_KEY

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance)


def test_no_server_error_and_documented_responses(settings: ApiSettings) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 23  # every documented method and path
    failures: list[str] = []
    for operation in operations:
        # /readyz answers a documented 503 here on purpose: no worker runs in this test.
        checks = CHECKS[1:] if operation.path == "/readyz" else CHECKS
        try:
            _fuzz(operation, checks)
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


def _fuzz(operation: schemathesis.APIOperation, checks: tuple) -> None:
    @given(case=operation.as_strategy())
    @hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def exercise(case: schemathesis.Case) -> None:
        response = case.call(headers={"X-API-Key": API_KEY})
        case.validate_response(response, checks=checks)

    exercise()


def test_json_results_conform_to_the_documented_schema(settings: ApiSettings) -> None:
    # Fuzzing never reaches a successful job, so the JSON product body is checked here on a real one.
    import redis

    from tests.service.builders import finish_job
    from workers import jobs

    store = redis.Redis.from_url(settings.redis_url)
    try:
        jobs.create_job(store, job_id="forecast-contract", kind="forecast", steps=3, input_path=None,
                        model_version="v")
        finish_job(store, job_id="forecast-contract", product_dir=settings.product_dir("forecast-contract"))
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
        operation = schema["/jobs/{jobID}/results"]["GET"]
        case = operation.Case(path_parameters={"jobID": "forecast-contract"}, query={"f": "json"})
        response = case.call(headers={"X-API-Key": API_KEY})
        assert response.status_code == 200 and response.json()["shape"] == [3, 16, 20]
        case.validate_response(response, checks=(response_schema_conformance, content_type_conformance))
    finally:
        store.close()

"""Fuzzing: schemathesis against the app's own OpenAPI schema on a real uvicorn server, and a Hypothesis property
that no bytes sent to /predict ever produce a 5xx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from resnet_service import Settings, create_app
from tests.conftest import ThreadedServer, add_figure, threaded_server

# A few thousand generated requests, about a minute: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

CASES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[ThreadedServer]:
    with threaded_server(Settings(model_path=model_path)) as running:
        yield running


# The operations, read from the app itself; building the app loads no model (its lifespan does).
OPERATIONS = [
    (path, method.upper())
    for path, methods in create_app(Settings(model_path=Path("unused.onnx"))).openapi()["paths"].items()
    for method in methods
]


@pytest.fixture(scope="module")
def api_schema(server: ThreadedServer, request: pytest.FixtureRequest) -> Iterator[OpenApiSchema]:
    yield schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    add_figure(request.config, f"schemathesis ran {sum(CASES.values())} cases: {dict(sorted(CASES.items()))}")


# schemathesis' own pytest integration does not run under pytest 9, so each operation's strategy is driven by
# Hypothesis directly; every default check still runs through call_and_validate.
@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_every_route_conforms_to_its_schema_and_never_answers_5xx(
    api_schema: OpenApiSchema, path: str, method: str
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        CASES[operation.label] += 1
        # Every check but one: a schema can say "a binary file", not "a file Pillow decodes", so schema-valid
        # random bytes are rightly refused (400/415). The other checks, 5xx and schema conformance included, run.
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    check()


@given(content=strategies.binary(max_size=8192), filename=strategies.text(max_size=40))
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_random_bytes_as_the_image_never_produce_a_5xx(server: ThreadedServer, content: bytes, filename: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
        response = http.post("/predict", files={"image": (filename or "f", content)})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["success"] is False


@given(
    body=strategies.binary(max_size=4096),
    boundary=strategies.from_regex(r"[A-Za-z0-9'()+_,./:=?-]{1,70}", fullmatch=True),
)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_random_multipart_bodies_never_produce_a_5xx(server: ThreadedServer, body: bytes, boundary: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
        response = http.post(
            "/predict", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
        )
    assert 400 <= response.status_code < 500, response.text

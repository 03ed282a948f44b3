"""A bounded property-based run of schemathesis over the OpenAPI schema: whatever it generates
for every operation, with an admin's key, the answer is never a 5xx."""

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from dxserve.api.app import create_app
from dxserve.core.security.principal import Role
from dxserve.server import build_services
from dxserve.settings import Settings
from tests.api.conftest import auth

EXAMPLES = 30  # per operation: about a thousand requests in all
# The admin's plan lets the run through: refusals by rate would hide what comes after them.
PLANS = "[plans.standard]\nrate_per_second = 1e6\nburst = 1000000\n"


@schemathesis.serializer('multipart/related; type="application/dicom"')
def stow_body(ctx: object, value: object) -> bytes:
    """A STOW-RS body as generated: whatever bytes, sent with the type the route declares."""
    return value if isinstance(value, bytes) else str(value).encode()


@schemathesis.serializer("application/zip")
def zip_body(ctx: object, value: object) -> bytes:
    """A dataset upload as generated: whatever bytes, sent as a zip."""
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, trained_repo: Path) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("fuzz")
    (data / "plans.toml").write_text(PLANS)
    settings_ = Settings(
        data_dir=data, model_repository=trained_repo, plans_file=data / "plans.toml", max_body_mb=2
    )
    with TestClient(create_app(build_services(settings_))) as client:
        yield client


@pytest.fixture(scope="module")
def admin_token(fuzzed: TestClient) -> str:
    accounts = fuzzed.app.state.services.accounts  # type: ignore[attr-defined]
    accounts.create_tenant("fuzzed")
    return str(accounts.create_key("fuzzed", Role.admin)[1])


@pytest.fixture(scope="module")
def api_schema(fuzzed: TestClient) -> schemathesis.BaseSchema:
    app: FastAPI = fuzzed.app  # type: ignore[assignment]
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_operation_answers_5xx(api_schema: schemathesis.BaseSchema, admin_token: str) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25
    seen: Counter[tuple[str, str, int]] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,  # the same cases on every run: a CI failure reproduces
            suppress_health_check=list(HealthCheck),
        )
        def no_5xx(case: schemathesis.Case) -> None:
            response = case.call(headers=auth(admin_token))
            seen[(case.method, case.operation.path, response.status_code)] += 1
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)

        no_5xx()
    print(sorted(seen.items()))  # pytest -s: what the run covered
    assert {path for _, path, _ in seen} == {op.path for op in operations}

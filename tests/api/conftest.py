"""An app over a real SQLite database, blob store and model repository, and keys for two tenants.

With ``DXSERVE_TEST_ON_RAY=1``, the same app as two replicas on a local Ray cluster over a fresh
PostgreSQL database, reached over HTTP (``tests/on_ray.py``): the API tests then check that
every route behaves on Ray as it does embedded."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dxserve.api.app import create_app
from dxserve.core.security.principal import Role
from dxserve.server import build_services
from dxserve.settings import Settings
from tests.on_ray import ON_RAY, client_on_ray, suite_settings


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, trained_repo: Path) -> Iterator[Settings]:
    data = tmp_path_factory.mktemp("data")
    with suite_settings(Settings(data_dir=data, model_repository=trained_repo, max_body_mb=2)) as s:
        yield s


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    if ON_RAY:
        with client_on_ray(settings) as ray_client:
            yield ray_client  # type: ignore[misc]
        return
    with TestClient(create_app(build_services(settings))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def keys(client: TestClient) -> dict[str, str]:
    """Tokens by name: admin, clinician, service (tenant A), other (tenant B), platform
    (a platform admin)."""
    accounts = client.app.state.services.accounts  # type: ignore[attr-defined]
    accounts.create_tenant("hospital-a")
    accounts.create_tenant("hospital-b")
    accounts.create_tenant("operator")
    tokens = {
        "admin": accounts.create_key("hospital-a", Role.admin)[1],
        "clinician": accounts.create_key("hospital-a", Role.clinician)[1],
        "service": accounts.create_key("hospital-a", Role.service)[1],
        "other": accounts.create_key("hospital-b", Role.clinician)[1],
        "platform": accounts.create_key("operator", Role.platform_admin)[1],
    }
    return tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def live_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data dir of this module's `dxserve serve` process (:func:`live_server`)."""
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="module")
def live_server(live_data_dir: Path, trained_repo: Path) -> Iterator[tuple[str, str]]:
    """``dxserve serve`` in its own process on a free loopback port: address and dev key."""
    from tests.api.test_tritonclient import run_server

    yield from run_server(live_data_dir, trained_repo)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On Ray, only the tests that go through ``client``: the others do not touch the app on Ray
    and have run embedded already."""
    if not ON_RAY:
        return
    through_app = [i for i in items if "client" in getattr(i, "fixturenames", ())]
    config.hook.pytest_deselected(items=[i for i in items if i not in through_app])
    items[:] = through_app

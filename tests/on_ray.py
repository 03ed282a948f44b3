"""The app on a local Ray cluster (loopback, no dashboard, no usage statistics), for tests.

With ``DXSERVE_TEST_ON_RAY=1`` the API suite's ``client`` is a :class:`RayClient` instead of
Starlette's in-process ``TestClient``: the same requests, over real HTTP through Ray Serve's
proxy to the replicas, on PostgreSQL.
"""

import os
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import httpx2
import pytest

from dxserve.server import build_services
from dxserve.settings import Settings
from tests.processes import free_port

ON_RAY = os.environ.get("DXSERVE_TEST_ON_RAY") == "1"


@contextmanager
def suite_settings(settings: Settings) -> Iterator[Settings]:
    """``settings`` as they are embedded; on Ray (``DXSERVE_TEST_ON_RAY=1``), over a fresh
    PostgreSQL database, as two replicas."""
    if not ON_RAY:
        yield settings
        return
    from tests.conftest import new_postgres_database

    with new_postgres_database() as url:
        yield settings.model_copy(
            update={"database_url": url, "ray_min_replicas": 2, "ray_max_replicas": 2,
                    "ray_cpus_per_replica": 0.5}
        )  # fmt: skip


@contextmanager
def serving_on_ray(settings: Settings) -> Iterator[tuple[Settings, str]]:
    """``settings``' app on a local Ray cluster: the settings it runs with, and its base URL."""
    ray_serve = pytest.importorskip("dxserve.ray_serve", reason="Ray tests need the ray extra")
    import ray
    from ray import serve

    settings = settings.model_copy(update={"host": "127.0.0.1", "port": free_port()})
    base = f"http://127.0.0.1:{settings.port}"
    try:
        ray_serve.run(settings, blocking=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the Ray replicas did not become ready in 120 s")
        yield settings, base
    finally:
        serve.shutdown()
        ray.shutdown()


class RayClient(httpx2.Client):
    """What the API tests use of ``TestClient``, over HTTP to the app on Ray; ``app.state
    .services`` are this process's own over the same database and data directory."""

    source = "127.0.0.1"  # the address the app sees requests from (TestClient's: "testclient")

    def __init__(self, base: str, settings: Settings) -> None:
        super().__init__(base_url=base, timeout=60)
        self.services = build_services(settings)
        self.app = SimpleNamespace(state=SimpleNamespace(services=self.services))


@contextmanager
def client_on_ray(settings: Settings) -> Iterator[RayClient]:
    with serving_on_ray(settings) as (settings, base), RayClient(base, settings) as client:
        try:
            yield client
        finally:
            client.services.close_stores()
            client.services.accounts.engine.dispose()

"""dxserve as two replicas on a local Ray cluster (loopback only, no dashboard, no usage
statistics) over one PostgreSQL database and one data directory: requests are spread over
both replicas, each diagnosis is stored once, usage counts every image, and the audit chain
the replicas wrote together verifies."""

import datetime as dt
import json
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dxserve.core.security.principal import Role
from dxserve.server import build_services
from dxserve.settings import Settings
from tests.conftest import new_postgres_database
from tests.processes import free_port

ray = pytest.importorskip("ray", reason="Ray Serve tests need the ray extra")
serve = pytest.importorskip("ray.serve")
pytestmark = pytest.mark.ray

REQUESTS = 400
CONCURRENCY = 16


@pytest.fixture(scope="module")
def cluster_settings(
    tmp_path_factory: pytest.TempPathFactory, trained_repo: Path
) -> Iterator[Settings]:
    with new_postgres_database() as url:
        yield Settings(
            data_dir=tmp_path_factory.mktemp("ray-data"),
            model_repository=trained_repo,
            database_url=url,
            host="127.0.0.1",
            port=free_port(),
            ray_min_replicas=2,
            ray_max_replicas=2,
            ray_cpus_per_replica=0.5,
            log_level="WARNING",
        )


@pytest.fixture(scope="module")
def cluster(cluster_settings: Settings) -> Iterator[str]:
    """The app on 2 replicas of a local Ray cluster; its base URL."""
    from dxserve import ray_serve

    ray_serve.run(cluster_settings, blocking=False)
    base = f"http://127.0.0.1:{cluster_settings.port}"
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
    try:
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()


def test_sqlite_is_refused_with_the_setting_named(tmp_path: Path) -> None:
    from dxserve.ray_serve import NotShareable, application

    with pytest.raises(NotShareable, match="DXSERVE_DATABASE_URL"):
        application(Settings(data_dir=tmp_path))


def test_requests_spread_over_replicas_each_stored_once(
    cluster: str, cluster_settings: Settings, phantom_dir: Path
) -> None:
    services = build_services(cluster_settings)
    tenant = services.accounts.create_tenant("group-a")
    _, token = services.accounts.create_key("group-a", Role.clinician)
    image = next((phantom_dir / "abnormal").glob("*.png")).read_bytes()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/png"}

    def diagnose(_: int) -> tuple[int, str, str]:
        request = urllib.request.Request(f"{cluster}/v1/diagnoses", image, headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, r.headers["X-Dxserve-Replica"], json.load(r)["id"]
        except urllib.error.HTTPError as refused:
            return refused.code, "", ""

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        answers = list(pool.map(diagnose, range(REQUESTS)))
    assert Counter(status for status, _, _ in answers) == {201: REQUESTS}
    by_replica = Counter(replica for _, replica, _ in answers)
    assert len(by_replica) == 2 and min(by_replica.values()) > 0, by_replica
    ids = [diagnosis for _, _, diagnosis in answers]
    assert len(set(ids)) == REQUESTS
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    end = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    totals = services.usage.totals(tenant, start, end)
    assert sum(t.images for t in totals) == REQUESTS
    assert services.audit.verify().ok
    services.close_stores()
    services.accounts.engine.dispose()
    assert os.environ.get("RAY_USAGE_STATS_ENABLED") == "0"

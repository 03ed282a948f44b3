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
from dataclasses import dataclass
from pathlib import Path

import pytest

from dxserve.core.security.principal import Role
from dxserve.server import build_services
from dxserve.services import Services
from dxserve.settings import Settings
from tests.conftest import new_postgres_database
from tests.processes import free_port

ray = pytest.importorskip("ray", reason="Ray Serve tests need the ray extra")
serve = pytest.importorskip("ray.serve")
pytestmark = pytest.mark.ray

REQUESTS = 400
CONCURRENCY = 16
FAULT_REQUESTS = 200
HOUR = dt.timedelta(hours=1)
UNLIMITED = "[plans.standard]\nrate_per_second = 1e9\nburst = 1000000000\n"


@pytest.fixture(scope="module")
def cluster_settings(
    tmp_path_factory: pytest.TempPathFactory, trained_repo: Path
) -> Iterator[Settings]:
    data = tmp_path_factory.mktemp("ray-data")
    # A plan whose rate limit the load never reaches: what is tested is sharing, not refusals.
    (data / "plans.toml").write_text(UNLIMITED)
    with new_postgres_database() as url:
        yield Settings(
            data_dir=data,
            plans_file=data / "plans.toml",
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


@dataclass
class Tenant:
    """A tenant of the cluster's database with a clinician's key, and the stores to check."""

    services: Services
    id: str
    token: str

    def usage_images(self) -> int:
        now = dt.datetime.now(dt.UTC)
        totals = self.services.usage.totals(self.id, now - dt.timedelta(hours=1), now + HOUR)
        return sum(t.images for t in totals)


@pytest.fixture(scope="module")
def stores(cluster_settings: Settings) -> Iterator[Services]:
    services = build_services(cluster_settings)
    yield services
    services.close_stores()
    services.accounts.engine.dispose()


def new_tenant(services: Services, name: str) -> Tenant:
    tenant_id = services.accounts.create_tenant(name, plan="standard")
    return Tenant(services, tenant_id, services.accounts.create_key(name, Role.clinician)[1])


def diagnose(base: str, token: str, image: bytes) -> tuple[int, str, str]:
    """Status, replica and diagnosis id of one POST /v1/diagnoses (status 0: the connection
    broke, which a client retries)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/png"}
    request = urllib.request.Request(f"{base}/v1/diagnoses", image, headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.headers["X-Dxserve-Replica"], json.load(r)["id"]
    except urllib.error.HTTPError as refused:
        return refused.code, "", ""
    except OSError:
        return 0, "", ""


def test_requests_spread_over_replicas_each_stored_once(
    cluster: str, stores: Services, phantom_dir: Path
) -> None:
    tenant = new_tenant(stores, "group-a")
    image = next((phantom_dir / "abnormal").glob("*.png")).read_bytes()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        answers = list(pool.map(lambda _: diagnose(cluster, tenant.token, image), range(REQUESTS)))
    assert Counter(status for status, _, _ in answers) == {201: REQUESTS}
    by_replica = Counter(replica for _, replica, _ in answers)
    assert len(by_replica) == 2 and min(by_replica.values()) > 0, by_replica
    assert len({diagnosis for _, _, diagnosis in answers}) == REQUESTS
    assert tenant.usage_images() == REQUESTS
    assert stores.audit.verify().ok
    assert os.environ.get("RAY_USAGE_STATS_ENABLED") == "0"


def test_a_replica_killed_mid_run_loses_nothing_answered(
    cluster: str, stores: Services, phantom_dir: Path
) -> None:
    """Every request gets a 201 whose diagnosis is then readable, or an error a client retries;
    Serve replaces the replica and both serve again."""
    tenant = new_tenant(stores, "group-b")
    image = next((phantom_dir / "normal").glob("*.png")).read_bytes()
    victims = [n for n in ray.util.list_named_actors(all_namespaces=True)
               if n["name"].startswith("SERVE_REPLICA::")]  # fmt: skip
    assert len(victims) == 2, victims
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        running = [
            pool.submit(diagnose, cluster, tenant.token, image) for _ in range(FAULT_REQUESTS)
        ]
        while sum(f.done() for f in running) < FAULT_REQUESTS // 4:
            time.sleep(0.05)
        ray.kill(ray.get_actor(victims[0]["name"], namespace=victims[0]["namespace"]))
        answers = [f.result() for f in running]
    statuses = Counter(status for status, _, _ in answers)
    assert set(statuses) <= {201, 0, 500, 502, 503}, statuses
    created = [diagnosis for status, _, diagnosis in answers if status == 201]
    assert len(set(created)) == len(created) > FAULT_REQUESTS // 4
    for diagnosis in created:  # every 201 is readable
        read = urllib.request.Request(f"{cluster}/v1/diagnoses/{diagnosis}",
                                      headers={"Authorization": f"Bearer {tenant.token}"})  # fmt: skip
        with urllib.request.urlopen(read, timeout=30) as r:
            assert r.status == 200
    # A request whose replica died after committing and before answering is stored without a
    # 201 (the client retries it); none is counted twice, none answered is missing.
    assert len(created) <= tenant.usage_images() <= FAULT_REQUESTS
    assert stores.audit.verify().ok
    deadline, serving = time.monotonic() + 120, set()
    while len(serving) < 2 and time.monotonic() < deadline:
        status, replica, _ = diagnose(cluster, tenant.token, image)
        if status == 201:
            serving.add(replica)
    assert len(serving) == 2, "Serve did not bring the second replica back"

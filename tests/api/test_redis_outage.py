"""Redis (the shared rate-limit buckets) goes away and comes back: requests go on, limited by
the database's buckets meanwhile, and each change is logged once, not once a request."""

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dxserve.api.app import create_app
from dxserve.core.security.principal import Role
from dxserve.server import build_services
from dxserve.settings import Settings
from dxserve.store import ratelimit
from tests.api.conftest import auth
from tests.processes import PrivateRedis

PLANS = "[plans.standard]\nrate_per_second = 50\nburst = 2000\n"  # leases of 5 tokens


def test_requests_go_on_while_redis_is_away(
    tmp_path: Path, trained_repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("redis", reason="Redis buckets need the redis extra")
    (tmp_path / "plans.toml").write_text(PLANS)
    with PrivateRedis() as redis_server:
        settings = Settings(
            data_dir=tmp_path / "data",
            model_repository=trained_repo,
            redis_url=redis_server.url,
            plans_file=tmp_path / "plans.toml",
        )
        with TestClient(create_app(build_services(settings), load_models=False)) as client:
            accounts = client.app.state.services.accounts  # type: ignore[attr-defined]
            accounts.create_tenant("st-mary")
            key_id, token = accounts.create_key("st-mary", Role.clinician)
            bucket = client.app.state.services.limiter.bucket  # type: ignore[attr-defined]
            redis_client = bucket.redis.client

            def requests(n: int) -> set[int]:
                return {
                    client.get("/v1/diagnoses", headers=auth(token)).status_code for _ in range(n)
                }

            assert requests(30) == {200}
            assert redis_client.exists(f"dxserve:rate:{key_id}")  # Redis holds the bucket

            caplog.set_level(logging.WARNING, logger="dxserve.store")
            redis_server.stop()
            assert requests(300) == {200}  # some 60 leases, from the database
            away = [r for r in caplog.records if "Redis is unreachable" in r.getMessage()]
            assert len(away) == 1

            redis_server.start()  # an empty Redis on the same port
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(ratelimit, "REDIS_RETRY_S", 0.0)
                assert requests(30) == {200}
            back = [r for r in caplog.records if "reachable again" in r.getMessage()]
            assert len(back) == 1
            assert redis_client.exists(f"dxserve:rate:{key_id}")  # back in Redis

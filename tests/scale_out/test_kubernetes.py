"""The KubeRay manifest, checked without a cluster: its Serve config is the one `dxserve ray
config` writes, health probes use the OIP's health routes, and every secret comes from the
Kubernetes Secret — none is written in the file."""

from pathlib import Path

import yaml

from dxserve.ray_serve import PROXY_CALLBACK, config
from dxserve.settings import Settings

MANIFEST = Path(__file__).parents[2] / "deploy" / "kubernetes" / "rayservice.yaml"


def documents() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text())}


def test_the_rayservice_serves_dxserves_app() -> None:
    service = documents()["RayService"]
    assert service["apiVersion"] == "ray.io/v1"
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    ours = config(Settings(ray_min_replicas=2, ray_max_replicas=8, ray_cpus_per_replica=2))
    app, expected = serve_config["applications"][0], ours["applications"][0]
    assert app["import_path"] == expected["import_path"] == "dxserve.ray_serve:app_builder"
    assert app["deployments"] == expected["deployments"]
    assert app["deployments"][0]["max_ongoing_requests"] >= 16  # the batcher fills batches


def test_probes_and_secrets() -> None:
    cluster = documents()["RayService"]["spec"]["rayClusterConfig"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = {e["name"]: e for e in worker["env"]}
    for secret in ("DXSERVE_DATABASE_URL", "DXSERVE_AUDIT_KEY"):
        assert env[secret]["valueFrom"]["secretKeyRef"]["name"] == "dxserve"
        assert "value" not in env[secret]
    assert env["DXSERVE_MASTER_KEY_FILE"]["value"].startswith("/secrets/")
    assert env["RAY_USAGE_STATS_ENABLED"]["value"] == "0"
    assert env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"]["value"] == PROXY_CALLBACK
    volumes = {v["name"]: v for v in cluster["headGroupSpec"]["template"]["spec"]["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "dxserve"
    assert documents()["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]

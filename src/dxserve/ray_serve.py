# ruff: noqa: E402  (Ray reads its environment when first imported: set below, before it is)
"""dxserve on Ray Serve: the same FastAPI app as replicas on a Ray cluster.

Each replica builds the app itself (``serve.ingress`` of a builder function), from ``DXSERVE_*``
variables passed in its runtime environment, so ONNX sessions, batchers and database engines
are made on the replica and never pickled. Requests are batched by dxserve's own batcher on
each replica, not by ``@serve.batch``: the batcher already sits behind every route (``/v1``,
``/v2``, DICOMweb, notes), so ``max_ongoing_requests`` is set high enough for it to fill batches.

Shared state lives where every replica reaches it: PostgreSQL (required), Redis for rate limits
when set, and the data directory (blobs) on a shared filesystem. Requests for a model go to
the replicas that hold it (:mod:`dxserve.ray_multiplex`).
"""

import contextlib
import os
from typing import Any

# Ray's proxies read this from their environment: the middleware naming each request's model.
PROXY_CALLBACK = "dxserve.ray_proxy:proxy_middlewares"
os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", PROXY_CALLBACK)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
if not os.environ.get("DXSERVE_RAY_ADDRESS"):
    # A cluster of this machine alone stays on loopback. Otherwise Ray (2.60) swaps 127.0.0.1
    # for the machine's address and its servers listen on every interface. Ray reads this when
    # first imported, hence here, before it is.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from fastapi import FastAPI, Request, Response
from ray import serve
from ray.serve import Application

from dxserve.errors import DxError
from dxserve.ray_multiplex import holder
from dxserve.settings import Settings

DEPLOYMENT = "dxserve"
REPLICA_HEADER = "X-Dxserve-Replica"


class NotShareable(ValueError):
    """Settings a cluster of replicas cannot share."""


def check(settings: Settings) -> None:
    """Refuse what replicas cannot share: a SQLite database is one machine's file."""
    if settings.database.startswith("sqlite"):
        raise NotShareable(
            "dxserve on Ray needs PostgreSQL that every replica reaches: set "
            "DXSERVE_DATABASE_URL (postgresql+psycopg://…); SQLite is one machine's file"
        )


def build_replica_app() -> FastAPI:
    """The app, built on the replica from its environment. It holds the model a request names
    (multiplexing, :mod:`dxserve.ray_multiplex`) before serving it; its answers name the replica."""
    from dxserve.server import build_app

    app = build_app()
    replica = serve.get_replica_context().replica_id.unique_id
    registry = app.state.services.registry
    registry.explicit_control = False  # a load or unload would reach this replica alone
    hold = holder(registry)

    @app.middleware("http")
    async def on_replica(request: Request, call_next: Any) -> Response:
        if reference := serve.get_multiplexed_model_id():
            with contextlib.suppress(DxError):  # the route answers what is wrong with it
                await hold(reference)
        response: Response = await call_next(request)
        response.headers[REPLICA_HEADER] = replica
        return response

    return app


@serve.ingress(build_replica_app)
class Replica:
    """One replica: all of dxserve's routes."""


Dxserve = serve.deployment(name=DEPLOYMENT)(Replica)


def deployment_options(settings: Settings) -> dict[str, Any]:
    return {
        "name": DEPLOYMENT,
        "max_ongoing_requests": settings.ray_max_ongoing_requests,
        "autoscaling_config": {
            "min_replicas": settings.ray_min_replicas,
            "max_replicas": max(settings.ray_min_replicas, settings.ray_max_replicas),
            "target_ongoing_requests": settings.ray_target_ongoing_requests,
        },
        "ray_actor_options": {"num_cpus": settings.ray_cpus_per_replica},
    }


def application(settings: Settings) -> Application:
    """The Serve application for ``settings``, which each replica is given as variables."""
    return _bind(settings, {"env_vars": settings.as_environment()})


def app_builder(args: dict[str, str]) -> Application:
    """For ``serve run dxserve.ray_serve:app_builder`` and Serve config files: settings from the
    cluster's environment (secrets from the platform's secret store, never the config file)."""
    del args
    return _bind(Settings(), None)


def _bind(settings: Settings, runtime_env: dict[str, Any] | None) -> Application:
    check(settings)
    options = deployment_options(settings)
    if runtime_env is not None:
        options["ray_actor_options"]["runtime_env"] = runtime_env
    return Dxserve.options(**options).bind()


def start_local_cluster() -> None:
    """A Ray cluster in this process's machine, on loopback, without dashboard or usage
    statistics; or the cluster ``DXSERVE_RAY_ADDRESS`` names."""
    import ray

    address = Settings().ray_address
    if address:
        ray.init(address=address)
        return
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, configure_logging=False)
    if ray.util.get_node_ip_address() not in ("127.0.0.1", "::1"):
        ray.shutdown()
        raise RuntimeError(
            "Ray was imported before dxserve.ray_serve and would listen on every interface: "
            "import dxserve.ray_serve first, or set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"
        )


def run(settings: Settings, blocking: bool = True) -> None:
    """Serve ``settings``'s app on Ray at its host and port."""
    start_local_cluster()
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(application(settings), name=DEPLOYMENT, route_prefix="/", blocking=blocking)


def config(settings: Settings) -> dict[str, Any]:
    """A Serve config file's content (``serve deploy``/KubeRay) for ``settings``' scaling; the
    replicas read the rest of their settings, and every secret, from the cluster's environment."""
    options = deployment_options(settings)
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": settings.port},
        "applications": [
            {
                "name": DEPLOYMENT,
                "route_prefix": "/",
                "import_path": "dxserve.ray_serve:app_builder",
                "deployments": [options],
            }
        ],
    }

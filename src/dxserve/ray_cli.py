"""``dxserve ray``: Ray Serve configuration for ``serve deploy`` and KubeRay."""

import json
from typing import Annotated

import typer

from dxserve.settings import Settings

ray_app = typer.Typer(help="Scale out on Ray Serve (the ray extra).", no_args_is_help=True)


@ray_app.command("config")
def config(
    port: Annotated[int | None, typer.Option(help="HTTP port of Serve's proxies.")] = None,
) -> None:
    """Print a Serve config (YAML) for `serve deploy` or a KubeRay RayService: the app, its
    replicas and autoscaling from DXSERVE_RAY_* settings. Replicas read every other setting,
    and every secret, from the cluster's environment: none is written here."""
    import yaml

    from dxserve.ray_serve import config as serve_config

    settings = Settings()
    if port is not None:
        settings = settings.model_copy(update={"port": port})
    # JSON first: YAML of plain data, keys in the order Serve documents them.
    typer.echo(yaml.safe_dump(json.loads(json.dumps(serve_config(settings))), sort_keys=False))

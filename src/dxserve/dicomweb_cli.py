"""``dxserve dicomweb push``: send a study's results (SR, heatmap) to a PACS over STOW-RS."""

import io
import os
from typing import Annotated

import typer
from rich.console import Console

from dxserve.admin_cli import audited
from dxserve.core.security.principal import Principal, Role
from dxserve.settings import Settings

dicomweb_app = typer.Typer(help="DICOMweb: exchange results with a PACS.")
console = Console(stderr=True)


@dicomweb_app.command("push")
def push(
    study: Annotated[str, typer.Argument(help="Study Instance UID, as the tenant knows it.")],
    tenant: Annotated[str, typer.Option(help="Tenant whose results to send.")],
    to: Annotated[str, typer.Option(help="DICOMweb root of the PACS, e.g. http://pacs/dicom-web")],
    authorization_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the PACS's Authorization header."),
    ] = None,
) -> None:
    """STOW-RS the SR and heatmap of every diagnosis of a study, pointed at the tenant's own
    patient and study, to a PACS."""
    import pydicom
    import requests
    from dicomweb_client import DICOMwebClient

    from dxserve.dicomweb import DicomWeb  # the data plane: loaded only when used
    from dxserve.server import build_services

    headers = {}
    if authorization_env:
        value = os.environ.get(authorization_env)
        if not value:
            raise typer.BadParameter(
                f"{authorization_env} is not set", param_hint="--authorization-env"
            )
        headers["Authorization"] = value
    services = build_services(Settings())
    try:
        tenant_id = services.accounts.tenant_id(tenant)
        operator = Principal(tenant_id, tenant, "operator", Role.admin)
        objects = DicomWeb(services).retrieve(operator, study)
    finally:
        services.close_stores()
    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in objects]
    try:
        answer = DICOMwebClient(to, headers=headers).store_instances(datasets)
    except requests.RequestException as exc:
        console.print(f"[red]error[/red] (pacs): STOW-RS to {to} failed: {exc}")
        raise typer.Exit(1) from None
    failed = answer.get("FailedSOPSequence") or []
    audited("dicomweb push", None, tenant)
    console.print(f"sent {len(datasets) - len(failed)} of {len(datasets)} result objects to {to}")
    if failed:
        raise typer.Exit(1)

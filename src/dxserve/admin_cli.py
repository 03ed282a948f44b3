"""Admin commands: tenants, API keys, model aliases and clinician feedback."""

import datetime as dt
import json
import time
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Column, Table
from sqlalchemy import Engine

from dxserve.core.billing.invoice import make_invoice
from dxserve.core.billing.plans import DEFAULT_PLAN, load_plans
from dxserve.core.runtime.aliases import set_alias as core_set_alias
from dxserve.core.runtime.repository import ModelRepository
from dxserve.core.security.audit_event import audit_event, to_fhir_bundle
from dxserve.core.security.envelope import (
    KeyRing,
    encode_master_key,
    new_master_key,
    read_key_file,
    write_key_file,
)
from dxserve.core.security.principal import Role
from dxserve.errors import InvalidInput
from dxserve.progress import bar
from dxserve.settings import Settings
from dxserve.store.accounts import Accounts
from dxserve.store.audit import AuditTrail, load_key
from dxserve.store.blobs import BlobStore
from dxserve.store.database import make_engine, migrate
from dxserve.store.feedback import Feedback, export_labelled
from dxserve.store.identities import Identities
from dxserve.store.tables import utcnow
from dxserve.store.usage import Usage, current_month, month_bounds

tenants_app = typer.Typer(help="Tenants: the organisations whose data dxserve keeps apart.")
keys_app = typer.Typer(help="API keys. A key is shown once; only its hash is stored.")
feedback_app = typer.Typer(help="Clinicians' feedback on diagnoses.")
audit_app = typer.Typer(help="The tamper-evident audit trail.")
console = Console(stderr=True)
# How long rotate-master waits before a second pass, for blobs a server sealed under the old
# key just before it noticed the new key file.
ROTATION_GRACE_S = 2.0


def database() -> Engine:
    """The database, migrated; its connections are closed when the command ends."""
    engine = make_engine(Settings().database)
    migrate(engine)
    command = click.get_current_context(silent=True)
    if command is not None:
        command.call_on_close(engine.dispose)
    return engine


def accounts() -> Accounts:
    return Accounts(database())


def audit_trail(engine: Engine | None = None) -> AuditTrail:
    settings = Settings()
    return AuditTrail(engine or database(), load_key(settings.audit_secret, settings.data_dir))


def audited(action: str, resource_id: str | None, tenant: str | None = None) -> None:
    """Record an operator's command in the audit trail (as the local operator, status 0)."""
    engine = database()
    tenant_id = Accounts(engine).tenant_id(tenant) if tenant else None
    audit_trail(engine).record_now(
        audit_event(
            f"cli: {action}",
            0,
            tenant_id=tenant_id,
            role="operator",
            resource_id=resource_id,
            source="local",
        )
    )


PlanOption = Annotated[str, typer.Option(help="Price plan (DXSERVE_PLANS_FILE or built in).")]


def checked_plan(plan: str) -> str:
    offered = load_plans(Settings().plans_file)
    if plan not in offered:
        raise typer.BadParameter(f"plan must be one of {sorted(offered)}")
    return plan


@tenants_app.command("create")
def create_tenant(
    name: Annotated[str, typer.Argument(help="Tenant name.")], plan: PlanOption = DEFAULT_PLAN
) -> None:
    """Create a tenant."""
    tenant_id = accounts().create_tenant(name, checked_plan(plan))
    audited("tenants create", tenant_id, name)
    console.print(f"tenant {name!r} created ({tenant_id}) on plan {plan!r}")


@tenants_app.command("set-plan")
def set_plan(
    name: Annotated[str, typer.Argument(help="Tenant name.")],
    plan: Annotated[str, typer.Argument(help="Price plan.")],
) -> None:
    """Move a tenant to another plan (it applies to the whole current month's invoice)."""
    accounts().set_plan(name, checked_plan(plan))
    audited(f"tenants set-plan {plan}", None, name)
    console.print(f"tenant {name!r} is on plan {plan!r}")


@tenants_app.command("list")
def list_tenants() -> None:
    """List tenants and their plans."""
    table = Table("name", "id", "plan", "created")
    for tenant in accounts().tenants():
        table.add_row(
            str(tenant["name"]),
            str(tenant["id"]),
            str(tenant["plan"]),
            str(tenant["created_at"])[:19],
        )
    console.print(table)


def usage(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    month: Annotated[str, typer.Option(help="YYYY-MM (default: this month).")] = "",
    csv_out: Annotated[bool, typer.Option("--csv", help="The invoice as CSV on stdout.")] = False,
) -> None:
    """A tenant's usage in a month and the invoice it makes at the tenant's plan."""
    engine = database()
    book = Accounts(engine)
    tenant_id = book.tenant_id(tenant)
    month = month or current_month()
    start, end = month_bounds(month)
    plan = load_plans(Settings().plans_file).get(book.tenant(tenant_id)["plan"])
    if plan is None:
        raise typer.BadParameter(f"tenant {tenant!r} is on a plan this configuration lacks")
    invoice = make_invoice(tenant, month, plan, Usage(engine).totals(tenant_id, start, end))
    if csv_out:
        print(invoice.to_csv(), end="")
        return
    table = Table("description", "quantity", "unit price", "amount", title=f"{tenant} {month}")
    for line in invoice.lines:
        table.add_row(line.description, str(line.quantity), str(line.unit_price), str(line.amount))
    table.add_row("total", "", "", f"{invoice.total} {plan.currency}")
    console.print(table)
    console.print(f"{invoice.images} images, {invoice.frames} frames on plan {plan.name!r}")


@keys_app.command("create")
def create_key(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    role: Annotated[Role, typer.Option(help="platform-admin, admin, clinician or service.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    scopes: Annotated[
        str | None, typer.Option(help="Limit to these permissions (e.g. 'diagnose,read_results').")
    ] = None,
    expires_in_days: Annotated[
        float | None, typer.Option(min=0.001, help="The key stops working after this.")
    ] = None,
) -> None:
    """Create an API key and print it once (to stdout)."""
    expires = utcnow() + dt.timedelta(days=expires_in_days) if expires_in_days else None
    key_id, token = accounts().create_key(tenant, role, name, scopes, expires)
    audited(f"keys create ({role})", key_id, tenant)
    console.print(f"key {key_id} ({role}) for tenant {tenant!r}; store it now, it is not kept:")
    print(token)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="Key id (the part after dxs_).")],
) -> None:
    """Revoke an API key."""
    accounts().revoke(key_id)
    audited("keys revoke", key_id)
    console.print(f"key {key_id} revoked")


@keys_app.command("rotate")
def rotate_key(
    key_id: Annotated[str, typer.Argument(help="Key id (the part after dxs_).")],
    grace_hours: Annotated[
        float, typer.Option(min=0, help="How long the old key keeps working.")
    ] = 24,
) -> None:
    """Replace a key with a new one like it; prints the new key once (to stdout)."""
    new_id, token = accounts().rotate(key_id, dt.timedelta(hours=grace_hours))
    audited("keys rotate", f"{key_id}->{new_id}")
    console.print(f"key {new_id} replaces {key_id}, which stops in {grace_hours:g} h; store it:")
    print(token)


@keys_app.command("create-master")
def create_master(
    out: Annotated[Path, typer.Option(help="Key file to create (outside the data dir).")],
) -> None:
    """Create a master key file (mode 600) for DXSERVE_MASTER_KEY_FILE."""
    if out.exists():
        raise typer.BadParameter(f"{out} exists; rotate it with `dxserve keys rotate-master`")
    write_key_file(out, [new_master_key()])
    console.print(
        f"master key written to {out}; set DXSERVE_MASTER_KEY_FILE={out} and back it up apart "
        "from the data: without it nothing stored can be read"
    )


@keys_app.command("rotate-master")
def rotate_master() -> None:
    """Replace the master key in DXSERVE_MASTER_KEY_FILE and re-wrap every stored data key
    under the new one (the data itself is not re-encrypted). Running servers follow the file."""
    settings = Settings()
    path = settings.master_key_file
    if settings.master_secret or path is None:
        raise typer.BadParameter(
            "rotate-master rotates DXSERVE_MASTER_KEY_FILE; with DXSERVE_MASTER_KEY set, move "
            "to a key file first (`dxserve keys create-master`)"
        )
    old = [encode_master_key(k) for k in read_key_file(path)]
    new = new_master_key()
    write_key_file(path, [new, *old])  # from now on servers seal under the new key
    blobs = BlobStore(settings.data_dir / "blobs", KeyRing.from_settings(None, path))
    changed = 0
    for attempt in ("re-wrap", "stragglers"):
        if attempt == "stragglers":  # sealed by a server before it saw the new file
            time.sleep(ROTATION_GRACE_S)
        digests = list(blobs.digests())
        with bar(console) as progress:
            task = progress.add_task(attempt, total=len(digests), status="")
            for digest in digests:
                changed += blobs.rewrap(digest)
                progress.advance(task)
        changed += Identities(database(), blobs.keys).rewrap()
    write_key_file(path, [new])
    audited("keys rotate-master", None)
    console.print(f"master key rotated; {changed} data keys re-wrapped, old key removed")


@keys_app.command("list")
def list_keys() -> None:
    """List API keys (never their secrets)."""
    table = Table(
        Column("id", no_wrap=True),
        "tenant",
        "role",
        "name",
        "scopes",
        "created",
        "expires",
        "last used",
        "revoked",
    )
    for key in accounts().list_keys():
        scopes = key["scopes"]
        table.add_row(
            str(key["id"]),
            str(key["tenant"]),
            str(key["role"]),
            str(key["name"]),
            " ".join(scopes) if isinstance(scopes, list) else "all of the role's",
            str(key["created_at"])[:16],
            str(key["expires_at"] or "")[:16],
            str(key["last_used_at"] or "")[:16],
            "yes" if key["revoked"] else "",
        )
    console.print(table)


def set_alias(
    model: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. production or canary.")],
    routes: Annotated[list[str], typer.Argument(help="VERSION or VERSION:WEIGHT, e.g. 1:90 2:10.")],
    shadow: Annotated[int | None, typer.Option(help="A version that runs in the shadow.")] = None,
    repository: Annotated[Path | None, typer.Option(help="Model repository.")] = None,
) -> None:
    """Point an alias at one version, split traffic between several, optionally with a shadow."""
    repo = ModelRepository(repository or Settings().repository)
    try:
        made = core_set_alias(repo.root / model, repo.versions(model), alias, routes, shadow)
    except InvalidInput as error:
        raise typer.BadParameter(error.detail) from None
    console.print(f"{model}:{alias} → {made.to_dict()}")


@feedback_app.command("export")
def export_feedback(
    model: Annotated[str, typer.Option(help="Model name.")],
    out: Annotated[Path, typer.Option(help="Folder to write the dataset into.")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's feedback.")] = None,
) -> None:
    """Write the inputs clinicians labelled as a dataset `dxserve train` reads: one folder per
    label and a manifest.csv (path, label)."""
    engine = database()
    tenant_id = Accounts(engine).tenant_id(tenant) if tenant else None
    settings = Settings()
    keys = KeyRing.from_settings(settings.master_secret, settings.master_key_file)
    blobs = BlobStore(settings.data_dir / "blobs", keys)
    written = export_labelled(Feedback(engine).labelled_inputs(model, tenant_id), blobs, out)
    console.print(f"{written} labelled inputs of {model} written to {out}")


@audit_app.command("verify")
def verify_audit() -> None:
    """Check the audit trail's hash chain; exit 1 naming the first broken event."""
    verdict = audit_trail().verify()
    if verdict.ok:
        console.print(f"audit trail intact: {verdict.checked} events")
        return
    console.print(
        f"[red]audit trail broken[/red] at event {verdict.broken_at}: {verdict.reason} "
        f"({verdict.checked} events before it are intact)"
    )
    raise typer.Exit(1)


@audit_app.command("export")
def export_audit(
    out: Annotated[Path, typer.Option(help="JSON file to write.")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's events.")] = None,
) -> None:
    """Write the audit events as a FHIR R4 Bundle of AuditEvent resources."""
    engine = database()
    tenant_id = Accounts(engine).tenant_id(tenant) if tenant else None
    bundle = to_fhir_bundle(list(audit_trail(engine).events(tenant_id)))
    out.write_text(json.dumps(bundle, indent=1))
    console.print(f"{bundle['total']} audit events written to {out}")

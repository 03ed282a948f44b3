"""``dxserve backup`` (while the server runs), ``dxserve backup verify`` and ``dxserve restore``."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from dxserve.settings import Settings

if TYPE_CHECKING:
    from dxserve.core.security.envelope import KeyRing

backup_app = typer.Typer(
    help="Back up the database and the stored blobs (never the master key); verify a backup.",
    invoke_without_command=True,
)
console = Console(stderr=True)


@backup_app.callback()
def backup(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="The backup file to write (a tar).")] = None,
) -> None:
    """Write a consistent backup while dxserve serves: the database snapshot and every blob."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise typer.BadParameter("give --out FILE", param_hint="--out")
    from dxserve.store.backup import backup as write_backup

    settings = Settings()
    summary = write_backup(settings.database, settings.data_dir, _keys(settings), out)
    console.print(
        f"backed up the {summary.database} database (schema {summary.revision}) and "
        f"{summary.blobs} blobs, {summary.bytes:,} bytes, to {summary.path}; the master key is "
        "not in it: keep it apart, a restore needs it"
    )


@backup_app.command("verify")
def verify(path: Annotated[Path, typer.Argument(help="The backup file.")]) -> None:
    """Check every member of a backup against its manifest (exit 2 when damaged)."""
    from dxserve.store.backup import verify as check

    manifest = check(path)
    console.print(
        f"backup of {manifest['created']} is intact: {len(manifest['files'])} files, "
        f"{manifest['database']} schema {manifest['schema_revision']}"
    )


def _keys(settings: Settings) -> "KeyRing":
    from dxserve.core.security.envelope import KeyRing

    return KeyRing.from_settings(settings.master_secret, settings.master_key_file)


def restore(
    path: Annotated[Path, typer.Argument(help="The backup file.")],
    data_dir: Annotated[Path, typer.Option(help="An empty data dir to restore into.")],
) -> None:
    """Restore a backup into an empty data dir (a PostgreSQL backup: into the empty database
    DXSERVE_DATABASE_URL names); start `dxserve serve` on it with the same master key."""
    from dxserve.store.backup import restore as unpack

    settings = Settings(data_dir=data_dir)
    manifest = unpack(path, data_dir, _keys(settings), settings.database_url)
    console.print(
        f"restored the backup of {manifest['created']} into {data_dir}; "
        "`dxserve serve` upgrades its schema if it is older"
    )

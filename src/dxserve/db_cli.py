"""``dxserve db``: the database's schema revision, and upgrading it.

``serve`` (and every admin command) upgrades the schema to the newest revision it knows on
start, and refuses a database written by a newer dxserve; these commands do it on their own,
for an operator who upgrades before starting the new release.
"""

import typer
from rich.console import Console

from dxserve.settings import Settings
from dxserve.store.database import (
    current_revision,
    head_revision,
    known_revisions,
    make_engine,
    migrate,
)

db_app = typer.Typer(help="The database schema: its revision, and upgrading it.")
console = Console(stderr=True)


@db_app.command("current")
def current() -> None:
    """Print the database's schema revision and the newest this dxserve knows."""
    engine = make_engine(Settings().database)
    try:
        revision, head = current_revision(engine), head_revision()
    finally:
        engine.dispose()
    if revision == head:
        state = "up to date"
    elif revision is None:
        state = "empty: `dxserve db upgrade` creates it"
    elif revision not in known_revisions():
        state = "written by a newer dxserve: this one refuses to use it"
    else:
        state = f"`dxserve db upgrade` brings it to {head}"
    print(f"database at {revision or 'no revision'}; this dxserve knows up to {head} ({state})")


@db_app.command("upgrade")
def upgrade() -> None:
    """Upgrade the database schema to the newest revision this dxserve knows."""
    engine = make_engine(Settings().database)
    try:
        before = current_revision(engine)
        migrate(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    console.print(f"database schema {before or 'empty'} → {after}")

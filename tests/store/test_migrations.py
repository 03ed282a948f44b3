"""The Alembic migrations build exactly the schema the SQLAlchemy tables describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dxserve.store.database import make_engine, migrate
from dxserve.store.tables import Base


def test_migrations_match_the_tables(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    # PostgreSQL keeps the session database across tests; other tables there are not ours.
    ours = [
        d
        for d in differences
        if not (d[0] == "remove_table" and d[1].name not in Base.metadata.tables)
    ]
    assert ours == [], ours

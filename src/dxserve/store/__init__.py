"""Persistence: SQLAlchemy tables and their stores, Alembic migrations, the blob store."""

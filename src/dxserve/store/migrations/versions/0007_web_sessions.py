"""The web app: browser sessions, and each diagnosis's referral flag as a column (the history
page filters on it).

Revision ID: 0007
Revises: 0006
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_web_sessions_key_id", "web_sessions", ["key_id"])
    with op.batch_alter_table("diagnoses") as batch:
        batch.add_column(sa.Column("refer", sa.Boolean(), nullable=True))
    diagnoses = sa.table(
        "diagnoses", sa.column("id", sa.String), sa.column("result", sa.Text), sa.column("refer")
    )
    connection = op.get_bind()
    stored = connection.execute(sa.select(diagnoses.c.id, diagnoses.c.result)).all()
    for diagnosis_id, result in stored:
        refer = bool(json.loads(result).get("refer_to_clinician", False))
        connection.execute(
            diagnoses.update().where(diagnoses.c.id == diagnosis_id).values(refer=refer)
        )


def downgrade() -> None:
    with op.batch_alter_table("diagnoses") as batch:
        batch.drop_column("refer")
    op.drop_index("ix_web_sessions_key_id", "web_sessions")
    op.drop_table("web_sessions")

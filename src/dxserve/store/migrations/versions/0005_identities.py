"""Pseudonym keys, sealed identities of de-identified instances, and each diagnosis's study.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("diagnoses") as batch:
        batch.add_column(sa.Column("study_uid", sa.String(64), nullable=True))
        batch.create_index("ix_diagnoses_tenant_study", ["tenant_id", "study_uid"])
    op.create_table(
        "pseudonym_keys",
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "identities",
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("sop_uid", sa.String(64), primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_identities_tenant_study", "identities", ["tenant_id", "study_uid"])


def downgrade() -> None:
    op.drop_table("identities")
    op.drop_table("pseudonym_keys")
    with op.batch_alter_table("diagnoses") as batch:
        batch.drop_index("ix_diagnoses_tenant_study")
        batch.drop_column("study_uid")

"""Clinician feedback on diagnoses; a diagnosis not assessed (out of distribution) has no probability.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("diagnoses") as batch:
        batch.alter_column("probability", existing_type=sa.Float(), nullable=True)
    op.create_table(
        "feedback",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("diagnosis_id", sa.String(32), sa.ForeignKey("diagnoses.id"), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("predicted_label", sa.String(100), nullable=False),
        sa.Column("agree", sa.Boolean(), nullable=False),
        sa.Column("correct_label", sa.String(100), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("diagnosis_id", "key_id", name="uq_feedback_diagnosis_key"),
    )
    op.create_index("ix_feedback_tenant_model", "feedback", ["tenant_id", "model", "version"])
    op.create_index("ix_feedback_model", "feedback", ["model", "version"])


def downgrade() -> None:
    op.drop_table("feedback")
    with op.batch_alter_table("diagnoses") as batch:
        batch.alter_column("probability", existing_type=sa.Float(), nullable=False)

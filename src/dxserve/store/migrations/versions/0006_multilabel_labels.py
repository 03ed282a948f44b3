"""Room for a multi-label answer: every statement present, joined by " + " (up to 400
characters), in a diagnosis's label and a feedback's predicted and correct labels.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = {"diagnoses": ("label",), "feedback": ("predicted_label", "correct_label")}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.String(400), existing_type=sa.String(100))


def downgrade() -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.String(100), existing_type=sa.String(400))

"""A step's earlier runs, set aside when ``resume_workflow`` retries a failed step afresh.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "durable_step_history",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("step_id", sa.Integer, primary_key=True),
        sa.Column("run", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("attempt_errors", sa.Text, nullable=False),
        sa.Column("started_at_ms", sa.BigInteger),
        sa.Column("completed_at_ms", sa.BigInteger),
        sa.Column("set_aside_at_ms", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("durable_step_history")

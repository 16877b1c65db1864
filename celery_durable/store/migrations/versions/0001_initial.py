"""The initial durable schema: workflows, steps, step errors, executors.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('ENQUEUED', 'PENDING')")
OPEN_STEP = sa.text("status IN ('PENDING', 'RUNNING', 'RETRYING')")


def upgrade() -> None:
    op.create_table(
        "durable_workflows",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False, server_default="workflow"),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("inputs", sa.Text),
        sa.Column("output", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("executor_id", sa.String(64)),
        sa.Column("queue", sa.String(255)),
        sa.Column("recovery_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_recovery_attempts", sa.Integer),
        sa.Column("run_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deadline_ms", sa.BigInteger),
        sa.Column("wake_at_ms", sa.BigInteger),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.Column("started_at_ms", sa.BigInteger),
        sa.Column("completed_at_ms", sa.BigInteger),
    )
    op.create_index(
        "ix_durable_workflows_active",
        "durable_workflows",
        ["status", "updated_at_ms"],
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )
    op.create_index("ix_durable_workflows_name", "durable_workflows", ["name"])
    op.create_index("ix_durable_workflows_created", "durable_workflows", ["created_at_ms"])
    op.create_table(
        "durable_steps",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("step_id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("output", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("started_at_ms", sa.BigInteger),
        sa.Column("completed_at_ms", sa.BigInteger),
        sa.Column("signature", sa.Text),
        sa.Column("task_id", sa.String(255)),
        sa.Column("executor_id", sa.String(64)),
        sa.Column("lease_id", sa.String(64)),
        sa.Column("due_at_ms", sa.BigInteger),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"
        ),
    )
    op.create_index(
        "ix_durable_steps_open",
        "durable_steps",
        ["status", "due_at_ms"],
        postgresql_where=OPEN_STEP,
        sqlite_where=OPEN_STEP,
    )
    op.create_index("ix_durable_steps_task_id", "durable_steps", ["task_id"])
    op.create_table(
        "durable_step_errors",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("step_id", sa.Integer, primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"
        ),
    )
    op.create_table(
        "durable_executors",
        sa.Column("executor_id", sa.String(64), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at_ms", sa.BigInteger, nullable=False),
        sa.Column("last_heartbeat_ms", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="RUNNING"),
    )


def downgrade() -> None:
    op.drop_table("durable_executors")
    op.drop_table("durable_step_errors")
    op.drop_index("ix_durable_steps_task_id", "durable_steps")
    op.drop_index("ix_durable_steps_open", "durable_steps")
    op.drop_table("durable_steps")
    op.drop_index("ix_durable_workflows_created", "durable_workflows")
    op.drop_index("ix_durable_workflows_name", "durable_workflows")
    op.drop_index("ix_durable_workflows_active", "durable_workflows")
    op.drop_table("durable_workflows")

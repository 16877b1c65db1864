"""Flow control: durable queues (a lock row per queue, each queued workflow's entry with
its priority, deduplication id, delay and admission time), an index by queue of the
workflows holding a slot (active, not waiting: a queue's slots are counted from them)
and of those waiting (operators' counts), and schedules' state.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WAITING_WHERE = sa.text("admitted_at_ms IS NULL")
WAITING_ROW_WHERE = sa.text("status = 'ENQUEUED' AND wake_at_ms = 4611686018427387905")
HOLDS_SLOT_WHERE = sa.text(
    "status IN ('ENQUEUED', 'PENDING')"
    " AND (status <> 'ENQUEUED' OR wake_at_ms IS NULL OR wake_at_ms <> 4611686018427387905)"
)


def upgrade() -> None:
    op.create_table(
        "durable_queues",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "durable_queue_entries",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workflow_id", sa.String(255), nullable=False, unique=True),
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deduplication_id", sa.String(255)),
        sa.Column("enqueued_at_ms", sa.BigInteger, nullable=False),
        sa.Column("not_before_ms", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("admitted_at_ms", sa.BigInteger),
        sa.Column("executor_id", sa.String(64)),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"
        ),
    )
    op.create_index(
        "ix_durable_queue_entries_waiting",
        "durable_queue_entries",
        ["queue", "priority", "seq"],
        postgresql_where=WAITING_WHERE,
        sqlite_where=WAITING_WHERE,
    )
    op.create_index(
        "ix_durable_queue_entries_admitted", "durable_queue_entries", ["queue", "admitted_at_ms"]
    )
    op.create_index(
        "ix_durable_queue_entries_dedup", "durable_queue_entries", ["queue", "deduplication_id"]
    )
    op.create_index(
        "ix_durable_workflows_queue_held",
        "durable_workflows",
        ["queue"],
        postgresql_where=HOLDS_SLOT_WHERE,
        sqlite_where=HOLDS_SLOT_WHERE,
    )
    op.create_index(
        "ix_durable_workflows_queue_waiting",
        "durable_workflows",
        ["queue", "created_at_ms"],
        postgresql_where=WAITING_ROW_WHERE,
        sqlite_where=WAITING_ROW_WHERE,
    )
    op.create_table(
        "durable_schedules",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("last_tick_ms", sa.BigInteger),
        sa.Column("paused", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_index("ix_durable_workflows_queue_waiting", "durable_workflows")
    op.drop_index("ix_durable_workflows_queue_held", "durable_workflows")
    op.drop_table("durable_schedules")
    op.drop_table("durable_queue_entries")
    op.drop_table("durable_queues")

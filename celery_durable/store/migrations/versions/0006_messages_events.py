"""Messages, events and waits: ``durable.send``/``recv``, ``set_event``/``get_event``.

``durable_messages`` holds each message to a workflow in send order (its id), kept once
received (``consumed_at_ms``), so that a repeated idempotency key stays a no-op; the
unconsumed ones of a topic are read through a partial index. ``durable_events`` holds a
workflow's latest value per key. ``durable_waits`` names what a parked workflow waits for,
so that a send (or ``set_event``) wakes exactly the workflows waiting for it, without a
polling query per waiting workflow. Rows go with their workflow (ON DELETE CASCADE).

Revision ID: 0006
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

UNCONSUMED_WHERE = sa.text("consumed_at_ms IS NULL")


def upgrade() -> None:
    op.create_table(
        "durable_messages",
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
        ),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("consumed_at_ms", sa.BigInteger),
        sa.Column("consumed_by_step", sa.Integer),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"
        ),
    )
    op.create_index(
        "ux_durable_messages_key", "durable_messages", ["workflow_id", "idempotency_key"],
        unique=True,
    )  # fmt: skip
    op.create_index(
        "ix_durable_messages_unconsumed",
        "durable_messages",
        ["workflow_id", "topic", "message_id"],
        postgresql_where=UNCONSUMED_WHERE,
        sqlite_where=UNCONSUMED_WHERE,
    )
    op.create_table(
        "durable_events",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"
        ),
    )
    op.create_table(
        "durable_waits",
        sa.Column("workflow_id", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target_workflow_id", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("wake_at_ms", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"
        ),
    )
    op.create_index(
        "ix_durable_waits_target", "durable_waits", ["target_workflow_id", "kind", "key"]
    )


def downgrade() -> None:
    op.drop_index("ix_durable_waits_target", table_name="durable_waits")
    op.drop_table("durable_waits")
    op.drop_table("durable_events")
    op.drop_index("ix_durable_messages_unconsumed", table_name="durable_messages")
    op.drop_index("ux_durable_messages_key", table_name="durable_messages")
    op.drop_table("durable_messages")

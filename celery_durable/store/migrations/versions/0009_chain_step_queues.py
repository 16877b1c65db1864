"""Chain steps in durable queues: a workflow may have several queue entries (a chain's
every step routed to a durable queue waits for admission with an entry of its own, and
the earlier entries keep their admission times for the limiter's windows), so
``durable_queue_entries.workflow_id`` is no longer unique; an index serves the lookups by
workflow.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLE = "durable_queue_entries"
INDEX = "ix_durable_queue_entries_workflow"
WAITING_WHERE = sa.text("admitted_at_ms IS NULL")


def _entries(unique: bool) -> sa.Table:
    """The table as 0008 made it (``unique``) or as it is after this revision: SQLite
    rebuilds it from this description (it cannot drop a column's constraint)."""
    return sa.Table(
        TABLE,
        sa.MetaData(),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workflow_id", sa.String(255), nullable=False, unique=unique),
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
        sa.Index(
            "ix_durable_queue_entries_waiting",
            "queue",
            "priority",
            "seq",
            sqlite_where=WAITING_WHERE,
        ),
        sa.Index("ix_durable_queue_entries_admitted", "queue", "admitted_at_ms"),
        sa.Index("ix_durable_queue_entries_dedup", "queue", "deduplication_id"),
    )


def _rebuild(unique: bool) -> None:
    with op.batch_alter_table(TABLE, copy_from=_entries(unique), recreate="always"):
        pass


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(unique=False)
    else:
        op.drop_constraint("durable_queue_entries_workflow_id_key", TABLE, type_="unique")
    op.create_index(INDEX, TABLE, ["workflow_id"])


def downgrade() -> None:
    op.drop_index(INDEX, TABLE)
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(unique=True)
    else:
        op.create_unique_constraint("durable_queue_entries_workflow_id_key", TABLE, ["workflow_id"])

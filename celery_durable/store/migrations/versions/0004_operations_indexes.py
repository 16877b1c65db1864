"""Indexes for operating a long history (filtered listings, retention, activity charts),
and a workflow's trace context.

Listings filtered by name, status or queue read newest first through an index on that
column and ``created_at_ms`` (the bare name index is replaced); retention finds ended
workflows by ``completed_at_ms`` (a partial index: active workflows have none); an id
prefix is served on Postgres by a ``varchar_pattern_ops`` index (SQLite reads it as a
range of the primary key); failed attempts per minute read ``step_errors`` by time.
``trace_context`` holds the starter's OpenTelemetry context, so a recovered run continues
its trace.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ENDED_WHERE = sa.text("completed_at_ms IS NOT NULL")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("durable_workflows") as batch:
        batch.add_column(sa.Column("trace_context", sa.Text))
        batch.drop_index("ix_durable_workflows_name")
        batch.create_index("ix_durable_workflows_name_created", ["name", "created_at_ms"])
        batch.create_index("ix_durable_workflows_status_created", ["status", "created_at_ms"])
        batch.create_index("ix_durable_workflows_queue_created", ["queue", "created_at_ms"])
        batch.create_index(
            "ix_durable_workflows_completed",
            ["completed_at_ms"],
            postgresql_where=ENDED_WHERE,
            sqlite_where=ENDED_WHERE,
        )
    if postgres:
        op.create_index(
            "ix_durable_workflows_id_prefix",
            "durable_workflows",
            ["workflow_id"],
            postgresql_ops={"workflow_id": "varchar_pattern_ops"},
        )
    op.create_index("ix_durable_step_errors_created", "durable_step_errors", ["created_at_ms"])


def downgrade() -> None:
    op.drop_index("ix_durable_step_errors_created", "durable_step_errors")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_durable_workflows_id_prefix", "durable_workflows")
    with op.batch_alter_table("durable_workflows") as batch:
        batch.drop_index("ix_durable_workflows_completed")
        batch.drop_index("ix_durable_workflows_queue_created")
        batch.drop_index("ix_durable_workflows_status_created")
        batch.drop_index("ix_durable_workflows_name_created")
        batch.create_index("ix_durable_workflows_name", ["name"])
        batch.drop_column("trace_context")

"""Workflows: their parent, and whether that parent waits for them.

``parent_workflow_id`` names the workflow that started this one (a child workflow), so
``list_workflows(parent_workflow_id=...)`` finds a parent's children through its index.
``awaited`` is 1 while the parent waits for this child with its worker slot given back:
the child's end then wakes the parent once no other awaited child is still running.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("durable_workflows") as batch:
        batch.add_column(sa.Column("parent_workflow_id", sa.String(255)))
        batch.add_column(sa.Column("awaited", sa.Integer, nullable=False, server_default="0"))
        batch.create_index("ix_durable_workflows_parent", ["parent_workflow_id"])


def downgrade() -> None:
    with op.batch_alter_table("durable_workflows") as batch:
        batch.drop_index("ix_durable_workflows_parent")
        batch.drop_column("awaited")
        batch.drop_column("parent_workflow_id")

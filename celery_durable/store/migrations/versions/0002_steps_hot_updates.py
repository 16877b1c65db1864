"""Steps: drop the unused open-steps index, so lease and completion updates can be HOT.

A chain step's row is updated twice per run (its lease, then its completion). With
``status`` indexed, every such update wrote a new entry in each index of the table. No
query uses that index (the recovery sweep reads steps through their workflow's primary
key), so it goes: the updates now change no indexed column, and Postgres writes them as
heap-only tuples (no index writes) whenever the page has room.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OPEN_STEP = sa.text("status IN ('PENDING', 'RUNNING', 'RETRYING')")


def upgrade() -> None:
    op.drop_index("ix_durable_steps_open", "durable_steps")


def downgrade() -> None:
    op.create_index(
        "ix_durable_steps_open",
        "durable_steps",
        ["status", "due_at_ms"],
        postgresql_where=OPEN_STEP,
        sqlite_where=OPEN_STEP,
    )

"""The durable schema as SQLAlchemy Core tables (the migrations create the same)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from ..types import ExecutorState, WorkflowKind

metadata = MetaData()

ACTIVE_WHERE = text("status IN ('ENQUEUED', 'PENDING')")  # ACTIVE_STATUSES, as SQL text
ENDED_WHERE = text("completed_at_ms IS NOT NULL")  # ended (resume clears completed_at_ms)
POSTGRES_ONLY_INDEXES = frozenset({"ix_durable_workflows_id_prefix"})

workflows = Table(
    "durable_workflows",
    metadata,
    Column("workflow_id", String(255), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("kind", String(16), nullable=False, server_default=WorkflowKind.WORKFLOW.value),
    Column("status", String(40), nullable=False),
    Column("inputs", Text),
    Column("output", Text),
    Column("error", Text),
    Column("executor_id", String(64)),
    Column("queue", String(255)),
    Column("recovery_attempts", Integer, nullable=False, server_default="0"),
    Column("max_recovery_attempts", Integer),
    Column("run_count", Integer, nullable=False, server_default="0"),
    Column("deadline_ms", BigInteger),
    Column("wake_at_ms", BigInteger),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("started_at_ms", BigInteger),
    Column("completed_at_ms", BigInteger),
    # a child workflow's parent; 1 while that parent waits for it (migration 0003)
    Column("parent_workflow_id", String(255)),
    Column("awaited", Integer, nullable=False, server_default="0"),
    # the starter's OpenTelemetry context (W3C headers as JSON), so a recovered run
    # continues its trace (migration 0004)
    Column("trace_context", Text),
    Index(
        "ix_durable_workflows_active",
        "status",
        "updated_at_ms",
        postgresql_where=ACTIVE_WHERE,
        sqlite_where=ACTIVE_WHERE,
    ),
    Index("ix_durable_workflows_created", "created_at_ms"),
    Index("ix_durable_workflows_parent", "parent_workflow_id"),
    # listings filtered by one column, newest first, and retention (migration 0004)
    Index("ix_durable_workflows_name_created", "name", "created_at_ms"),
    Index("ix_durable_workflows_status_created", "status", "created_at_ms"),
    Index("ix_durable_workflows_queue_created", "queue", "created_at_ms"),
    Index(
        "ix_durable_workflows_completed",
        "completed_at_ms",
        postgresql_where=ENDED_WHERE,
        sqlite_where=ENDED_WHERE,
    ),
    # an id prefix is a LIKE 'p%', which a Postgres btree serves only with pattern ops
    # whatever the database's collation; SQLite reads a prefix as a range of the key
    Index(
        "ix_durable_workflows_id_prefix",
        "workflow_id",
        postgresql_ops={"workflow_id": "varchar_pattern_ops"},
    ).ddl_if(dialect="postgresql"),
)

steps = Table(
    "durable_steps",
    metadata,
    Column("workflow_id", String(255), primary_key=True),
    Column("step_id", Integer, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("output", Text),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("started_at_ms", BigInteger),
    Column("completed_at_ms", BigInteger),
    # chain steps only: the Celery signature, its task id, the lease owner, when it is due
    Column("signature", Text),
    Column("task_id", String(255)),
    Column("executor_id", String(64)),
    Column("lease_id", String(64)),
    Column("due_at_ms", BigInteger),
    ForeignKeyConstraint(["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"),
    Index("ix_durable_steps_task_id", "task_id"),
    # no index on status: lease and completion updates stay heap-only (migration 0002)
)

step_errors = Table(
    "durable_step_errors",
    metadata,
    Column("workflow_id", String(255), primary_key=True),
    Column("step_id", Integer, primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("error", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    ForeignKeyConstraint(["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"),
    # retries per minute (migration 0004); attempt errors are only ever inserted
    Index("ix_durable_step_errors_created", "created_at_ms"),
)

executors = Table(
    "durable_executors",
    metadata,
    Column("executor_id", String(64), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("last_heartbeat_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, server_default=ExecutorState.RUNNING.value),
)

# messages, events and waits (migration 0006; store/messages.py) ----------------------
UNCONSUMED_WHERE = text("consumed_at_ms IS NULL")

messages = Table(
    "durable_messages",
    metadata,
    # send order; SQLite numbers only an INTEGER primary key itself
    Column("message_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("workflow_id", String(255), nullable=False),  # the receiver
    Column("topic", String(255), nullable=False),  # "" for no topic
    Column("message", Text, nullable=False),
    Column("idempotency_key", String(255)),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("consumed_at_ms", BigInteger),
    Column("consumed_by_step", Integer),
    ForeignKeyConstraint(["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"),
    # a repeated key is a no-op, also after the first message was received
    Index("ux_durable_messages_key", "workflow_id", "idempotency_key", unique=True),
    Index(
        "ix_durable_messages_unconsumed",
        "workflow_id",
        "topic",
        "message_id",
        postgresql_where=UNCONSUMED_WHERE,
        sqlite_where=UNCONSUMED_WHERE,
    ),
)

events = Table(
    "durable_events",
    metadata,
    Column("workflow_id", String(255), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    ForeignKeyConstraint(["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"),
)

waits = Table(
    "durable_waits",
    metadata,
    # a parked workflow (one wait at a time), what it waits for, and the wake-up time of
    # that parking: a send wakes it only while it is still parked for this wait
    Column("workflow_id", String(255), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("target_workflow_id", String(255), nullable=False),
    Column("key", String(255), nullable=False),
    Column("wake_at_ms", BigInteger, nullable=False),
    ForeignKeyConstraint(["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"),
    Index("ix_durable_waits_target", "target_workflow_id", "kind", "key"),
)

# a step's earlier run, set aside when resume_workflow retried the step afresh: its record
# and its attempt errors (a JSON list, in attempt order), numbered by run (migration 0007)
step_history = Table(
    "durable_step_history",
    metadata,
    Column("workflow_id", String(255), primary_key=True),
    Column("step_id", Integer, primary_key=True),
    Column("run", Integer, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("attempts", Integer, nullable=False),
    Column("attempt_errors", Text, nullable=False),
    Column("started_at_ms", BigInteger),
    Column("completed_at_ms", BigInteger),
    Column("set_aside_at_ms", BigInteger, nullable=False),
    ForeignKeyConstraint(["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"),
)


# flow control (migration 0008) ---------------------------------------------
#: one row per durable queue: admission locks it, so admissions of a queue are serialized
queues = Table(
    "durable_queues",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False, server_default="0"),  # admissions so far
)

WAITING_WHERE = text("admitted_at_ms IS NULL")

#: a workflow's place in a durable queue; its slot is counted from the workflow's row
queue_entries = Table(
    "durable_queue_entries",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # FIFO order
    # one entry per wait: a chain has one for each of its steps routed to a durable queue
    Column("workflow_id", String(255), nullable=False),
    Column("queue", String(255), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("deduplication_id", String(255)),
    Column("enqueued_at_ms", BigInteger, nullable=False),
    Column("not_before_ms", BigInteger, nullable=False, server_default="0"),
    Column("admitted_at_ms", BigInteger),
    Column("executor_id", String(64)),
    ForeignKeyConstraint(["workflow_id"], ["durable_workflows.workflow_id"], ondelete="CASCADE"),
    Index(
        "ix_durable_queue_entries_waiting",
        "queue",
        "priority",
        "seq",
        postgresql_where=WAITING_WHERE,
        sqlite_where=WAITING_WHERE,
    ),
    Index("ix_durable_queue_entries_admitted", "queue", "admitted_at_ms"),
    Index("ix_durable_queue_entries_dedup", "queue", "deduplication_id"),
    Index("ix_durable_queue_entries_workflow", "workflow_id"),  # migration 0009
)

#: a workflow holding a slot of its queue: active and not waiting for admission (the
#: value is ``flowtypes.WAIT_FOR_ADMISSION_MS``). Literal SQL, so that the queries that
#: repeat it use the partial index below, whatever the history and the waiting backlog
HOLDS_SLOT_WHERE = text(
    "status IN ('ENQUEUED', 'PENDING')"
    " AND (status <> 'ENQUEUED' OR wake_at_ms IS NULL OR wake_at_ms <> 4611686018427387905)"
)
Index(
    "ix_durable_workflows_queue_held",
    workflows.c.queue,
    postgresql_where=HOLDS_SLOT_WHERE,
    sqlite_where=HOLDS_SLOT_WHERE,
)

#: a workflow waiting for admission in its queue (operators' counts and ages read these)
WAITING_ROW_WHERE = text("status = 'ENQUEUED' AND wake_at_ms = 4611686018427387905")
Index(
    "ix_durable_workflows_queue_waiting",
    workflows.c.queue,
    workflows.c.created_at_ms,
    postgresql_where=WAITING_ROW_WHERE,
    sqlite_where=WAITING_ROW_WHERE,
)

schedules = Table(
    "durable_schedules",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("last_tick_ms", BigInteger),
    Column("paused", Integer, nullable=False, server_default="0"),
    Column("updated_at_ms", BigInteger, nullable=False),
)

"""Operating the store: what the dashboard, the metrics and retention ask (no SQL, no
Celery). Listings are decoded for people, bulk actions go batch by batch, and garbage
collection deletes ended workflows in short batches under a time budget.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..types import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    ActivityBucket,
    ExecutorState,
    ExecutorWork,
    PageCursor,
    ResumeOutcome,
    WorkflowFilter,
    WorkflowRecord,
)
from . import management
from .recovery import Publisher
from .runtime import Runtime, log

MINUTE_MS = 60_000


@dataclass(frozen=True)
class Page:
    """One page of a listing (rows as stored: nothing decoded) and the cursor of the next
    (None: this was the last)."""

    records: list[WorkflowRecord]
    next: PageCursor | None


def page(
    runtime: Runtime, where: WorkflowFilter, limit: int, after: PageCursor | None = None
) -> Page:
    """Newest first; asks one row more than shown to know whether another page follows."""
    records = runtime.store.list_page(where, limit=limit + 1, after=after)
    shown = records[:limit]
    cursor = None
    if len(records) > limit:
        cursor = PageCursor(shown[-1].created_at_ms, shown[-1].workflow_id)
    return Page(shown, cursor)


@dataclass(frozen=True)
class Health:
    """What needs an operator's eye: stalled workflows (the sweep would take them now),
    how long the longest-waiting ENQUEUED one has been due, and the executors."""

    stalled: int
    stalled_sample: list[WorkflowRecord]
    oldest_enqueued_seconds: float | None
    executors: list[ExecutorWork]


def _cutoffs(runtime: Runtime) -> tuple[int, int]:
    lost = runtime.clock.now_ms() - int(runtime.settings.enqueue_timeout * 1000)
    return runtime.stale_before_ms, lost


def stalled_count(runtime: Runtime) -> int:
    return runtime.store.count_stalled(*_cutoffs(runtime))


def oldest_enqueued_seconds(runtime: Runtime) -> float | None:
    now = runtime.clock.now_ms()
    since = runtime.store.oldest_enqueued_ms(now)
    return None if since is None else max(0, now - since) / 1000


def health(runtime: Runtime, *, sample: int = 20, executor_window: float = 3600.0) -> Health:
    """Executors seen within ``executor_window`` seconds (and any that still own work)."""
    stale, lost = _cutoffs(runtime)
    since = runtime.clock.now_ms() - int(executor_window * 1000)
    return Health(
        stalled=runtime.store.count_stalled(stale, lost),
        stalled_sample=runtime.store.list_stalled(stale, lost, sample),
        oldest_enqueued_seconds=oldest_enqueued_seconds(runtime),
        executors=runtime.store.list_executors(since),
    )


def executor_is_live(runtime: Runtime, work: ExecutorWork) -> bool:
    e = work.executor
    return e.status == ExecutorState.RUNNING and e.last_heartbeat_ms >= runtime.stale_before_ms


def activity(
    runtime: Runtime, hours: float = 3.0, bucket_ms: int = MINUTE_MS
) -> list[ActivityBucket]:
    """Every bucket of the last ``hours``, oldest first, empty ones included (a chart)."""
    now = runtime.clock.now_ms()
    first = (now - int(hours * 3_600_000)) // bucket_ms * bucket_ms
    found = {b.start_ms: b for b in runtime.store.activity(first, bucket_ms)}
    return [found.get(t, ActivityBucket(t)) for t in range(first, now + 1, bucket_ms)]


# bulk actions -----------------------------------------------------------------------
@dataclass
class BulkReport:
    """What a bulk action did to the workflows matching its filter."""

    matched: int = 0
    changed: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)


def _matching_ids(
    runtime: Runtime, where: WorkflowFilter, limit: int, batch: int
) -> Iterator[list[str]]:
    """Batches of ids matching ``where`` (newest first), ``limit`` ids at most in all.

    Keyset paging: a row leaving the filter (cancelled by the batch before) does not
    shift the next page."""
    after: PageCursor | None = None
    left = limit
    while left > 0:
        records = runtime.store.list_page(where, limit=min(batch, left), after=after)
        if not records:
            return
        yield [r.workflow_id for r in records]
        left -= len(records)
        after = PageCursor(records[-1].created_at_ms, records[-1].workflow_id)


def bulk_cancel(
    runtime: Runtime, where: WorkflowFilter, *, limit: int = 10_000, batch: int = 500
) -> BulkReport:
    """Cancel every active workflow matching ``where`` (up to ``limit`` matches)."""
    active = tuple(s for s in where.statuses if s in ACTIVE_STATUSES) or tuple(ACTIVE_STATUSES)
    narrowed = WorkflowFilter(**{**where.__dict__, "statuses": active})
    report = BulkReport()
    for ids in _matching_ids(runtime, narrowed, limit, batch):
        report.matched += len(ids)
        report.changed += runtime.store.cancel_workflows(ids)
    return report


def bulk_resume(
    runtime: Runtime,
    where: WorkflowFilter,
    publish: Publisher,
    *,
    limit: int = 10_000,
    batch: int = 500,
) -> BulkReport:
    """Resume every workflow matching ``where`` that resume would take (see
    ``management.resume``: never one a live executor runs, nor a finished one)."""
    report = BulkReport()
    for ids in _matching_ids(runtime, where, limit, batch):
        report.matched += len(ids)
        for workflow_id in ids:
            outcome = management.resume(runtime, workflow_id, publish)
            report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
            if outcome is ResumeOutcome.RESUMED:
                report.changed.append(workflow_id)
    return report


# retention --------------------------------------------------------------------------
@dataclass
class GcReport:
    """What one garbage collection did (or, dry, would do)."""

    deleted: int = 0
    batches: int = 0
    executors_deleted: int = 0
    dry_run: bool = False
    finished: bool = True  # False: the time budget ran out first; the next run goes on


def collect_garbage(
    runtime: Runtime,
    older_than_seconds: float,
    *,
    statuses: Sequence[str] = tuple(TERMINAL_STATUSES),
    batch_size: int = 500,
    dry_run: bool = False,
    time_budget: float | None = None,
    pause_ratio: float = 3.0,
) -> GcReport:
    """Delete workflows that ended (in ``statuses``) more than ``older_than_seconds`` ago,
    with everything they own, ``batch_size`` per transaction; then executors silent that
    long. Never an active workflow, nor one a live parent or child still needs.

    After each full batch it pauses ``pause_ratio`` times as long as the batch took, so a
    long backlog leaves the database to the workflows (bench.operations, beside a
    throughput run: a pause as long as the batch slowed the run by 29 %, three times as
    long by 13 %)."""
    clock = runtime.clock
    before = clock.now_ms() - int(older_than_seconds * 1000)
    wanted = [s for s in statuses if s in TERMINAL_STATUSES]
    if dry_run:
        return GcReport(deleted=runtime.store.count_deletable(wanted, before), dry_run=True)
    report = GcReport()
    stop_at = None if time_budget is None else clock.monotonic() + time_budget
    while True:
        started = clock.monotonic()
        deleted = runtime.store.delete_ended(wanted, batch_size, before_ms=before)
        report.batches += 1
        report.deleted += len(deleted)
        if len(deleted) < batch_size:
            break
        if stop_at is not None and clock.monotonic() >= stop_at:
            report.finished = False
            break
        if pause_ratio > 0:
            clock.sleep((clock.monotonic() - started) * pause_ratio)
    report.executors_deleted = runtime.store.delete_stale_executors(before)
    if report.deleted:
        log.info(
            "durable gc: deleted %d ended workflows in %d batches", report.deleted, report.batches
        )
    return report


def delete_workflows(runtime: Runtime, workflow_ids: Sequence[str]) -> list[str]:
    """Delete these workflows if they ended (whatever their age), with everything they
    own; an active one, or one a live parent or child still needs, stays. Returns the
    ids deleted."""
    deleted: list[str] = []
    unique = list(dict.fromkeys(workflow_ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        deleted += runtime.store.delete_ended(
            list(TERMINAL_STATUSES), len(chunk), workflow_ids=chunk
        )
    return deleted

"""Durable chains whose steps are routed to durable queues (runtime/chain_queues.py has the
model): which declared durable queue each link goes to, the route a step's checkpoint
takes, and the admission right after it.

A link goes where Celery would send it: its signature's ``queue``, else its task's own
``queue``, else ``task_routes``. That name is written into the link's options at the
chain's start, so every later decision is a look-up in the in-process registry of declared
durable queues (no statement: a chain that uses none keeps its hot path as it is).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kombu.entity import Queue

from ..flowtypes import ChainRoute
from ..runtime.chain_queues import next_route
from ..runtime.queues import admit
from .queues import DurableQueue, durable_queues, publisher, served

if TYPE_CHECKING:
    from .durable import Durable

log = logging.getLogger("celery_durable.queues")


def _queue_name(queue: Any) -> str | None:
    if isinstance(queue, DurableQueue | Queue):
        return str(queue.name)
    return queue if isinstance(queue, str) else None


def routed_name(durable: Durable, sig: Any) -> str | None:
    """The Celery queue ``sig`` goes to: its own ``queue``, its task's, or the router's."""
    options = dict(sig.get("options") or {})
    name = _queue_name(options.get("queue"))
    task = durable.app.tasks.get(sig.get("task"))
    if name is None and task is not None:
        name = _queue_name(getattr(task, "queue", None))
    if name is None:
        route = durable.app.amqp.router.route(options, sig.get("task"), (), {})
        name = _queue_name(route.get("queue"))
    return name


def routed_queue(durable: Durable, sig: Any) -> DurableQueue | None:
    """The declared durable queue Celery would send ``sig`` to, if any."""
    known = durable_queues(durable)
    if not known:
        return None
    return known.get(routed_name(durable, sig) or "")


def mark_links(durable: Durable, sigs: Sequence[Any]) -> list[DurableQueue | None]:
    """Each link's durable queue (None: none), its name written into the link's options."""
    found = [routed_queue(durable, sig) for sig in sigs]
    for sig, queue in zip(sigs, found, strict=True):
        if queue is not None:
            sig.options["queue"] = queue.name
    return found


def delivered_queue(durable: Durable, request: Any) -> DurableQueue | None:
    """The durable queue this delivery came from (a worker's own ``<name>@<executor id>``
    queue counts as its queue), if any."""
    known = durable_queues(durable)
    if not known:
        return None
    info = getattr(request, "delivery_info", None) or {}
    name = str(info.get("routing_key") or "")
    executor_id = durable.worker_executor_id
    if executor_id and name.endswith(f"@{executor_id}"):
        name = name[: -len(executor_id) - 1]
    return known.get(name)


def route_after(durable: Durable, request: Any, workflow_id: str) -> ChainRoute | None:
    """Where the chain goes when this delivery's step commits (None: no durable queue
    involved, the checkpoint alone)."""
    links = request.chain
    if not links or not durable_queues(durable):
        return None
    options = dict(links[-1].get("options") or {})
    following = durable_queues(durable).get(_queue_name(options.get("queue")) or "")
    current = delivered_queue(durable, request)
    if following is None and current is None:
        return None
    priority = 0
    if following is not None and following.spec.priority_enabled:
        priority = int(options.get("priority") or 0)
    return next_route(
        durable.runtime,
        workflow_id,
        current.spec if current else None,
        following.spec if following else None,
        following.name if following else routed_name(durable, links[-1]),
        priority,
    )


def admit_routed(durable: Durable, route: ChainRoute, request: Any) -> None:
    """The step's checkpoint put the chain's next step in a durable queue: Celery must not
    publish it (admission will), and an admission runs now (the queue may have room). The
    end of a step delivered from that same queue admits anyway (``task_postrun``)."""
    if route.entry is None:
        return  # it left its durable queue: Celery publishes the next link as usual
    request.chain = None
    found = durable_queues(durable)[route.entry.queue]
    current = delivered_queue(durable, request)
    if current is not None and current.name == found.name:
        return
    owner = None
    if found.spec.worker_concurrency is not None:
        if found.name not in served(durable):
            return  # admitted by the workers that consume it, on their periodic pass
        owner = durable.worker_executor_id
    try:
        admit(durable.runtime, found.spec, owner, publisher(durable))
    except Exception as exc:  # the periodic pass admits it a moment later
        log.warning("admission in queue %s failed: %s", found.name, exc)

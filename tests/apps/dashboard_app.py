"""The app of the dashboard's real-worker test: an order whose charge fails until a fix
is deployed (a file in the test's flag folder), with every step body's run counted."""

from __future__ import annotations

import os

from .common import make_app, record_effect

app, durable = make_app("dashboard_app")


class CardDeclined(Exception):
    """A step's error (module level, so it is rebuilt from the store as itself)."""


def fixed(order_id: str) -> bool:
    return os.path.exists(os.path.join(os.environ["DURABLE_TEST_FLAGS"], f"fixed-{order_id}"))


@durable.step()
def reserve(order_id: str) -> str:
    record_effect(durable, "reserve")
    return f"r-{order_id}"


@durable.step(retries=1, interval_seconds=0.1)
def charge(order_id: str) -> str:
    record_effect(durable, "charge")
    if not fixed(order_id):
        raise CardDeclined(f"card declined for {order_id}")
    return f"tx-{order_id}"


@durable.step()
def ship(order_id: str, tx: str) -> str:
    record_effect(durable, "ship")
    return f"shipped {order_id} ({tx})"


@durable.workflow()
def order(order_id: str) -> str:
    reserve(order_id)
    return ship(order_id, charge(order_id))

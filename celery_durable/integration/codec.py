"""The JSON codec of stored values: kombu's JSON, which Celery users already rely on
(it round-trips datetime, date, time, UUID and Decimal)."""

from __future__ import annotations

from typing import Any

from kombu.utils import json


class KombuJson:
    """``serialization.JsonCodec`` over ``kombu.utils.json``."""

    def dumps(self, value: Any) -> str:
        return str(json.dumps(value))  # type: ignore[no-untyped-call]

    def loads(self, text: str) -> Any:
        return json.loads(text)  # type: ignore[no-untyped-call]


KOMBU_JSON = KombuJson()

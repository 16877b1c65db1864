"""The durable store: SQLAlchemy Core tables, queries and migrations (no Celery here)."""

from .engine import DEFAULT_SQLITE_FILE, normalize_url
from .migrate import current_revision, head_revision, upgrade
from .store import Store

__all__ = [
    "DEFAULT_SQLITE_FILE",
    "Store",
    "current_revision",
    "head_revision",
    "normalize_url",
    "upgrade",
]

"""Everything that touches Celery: the Durable object, task base class, worker hooks, CLI."""

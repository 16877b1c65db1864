"""Workflow execution: context, replay, steps, handles (uses the store, never Celery)."""

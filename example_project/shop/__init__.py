"""An order-processing shop built on Celery and celery-durable."""

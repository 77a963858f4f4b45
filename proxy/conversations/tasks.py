"""Celery tasks for stored responses: thin wrappers over services.py."""

from celery import shared_task
from django.conf import settings

from proxy.conversations.services import responses_expire


@shared_task
def expire_responses() -> int:
    """Hourly: delete stored responses past ``RESPONSES_RETENTION_DAYS``. Safe to run twice."""
    return responses_expire(days=settings.RESPONSES_RETENTION_DAYS)

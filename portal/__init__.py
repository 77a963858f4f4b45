# Load the Celery app with Django, so shared tasks bind to it (and its broker) in every process.
from portal.celery import app as celery_app

__all__ = ["celery_app"]

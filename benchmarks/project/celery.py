"""The bench project's Celery app, configured from Django settings (``CELERY_*``): the web
processes of the ``track-celery`` variant publish with it (``TRACKING_CELERY_APP``)."""

from celery import Celery

app = Celery("bench")
app.config_from_object("django.conf:settings", namespace="CELERY")

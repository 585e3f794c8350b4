"""The write path: hand-off (synchronous, in-process writer, Celery), the durable spool, and
``ingest``, the one batch step that enriches, redacts, encrypts, detects and inserts."""

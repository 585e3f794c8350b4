"""Export records and formats (shared by the API and ``manage.py tracking export``)."""

"""The security dashboard: flagged queue, activity detail, live feed and charts.

Server-rendered Django templates plus one vanilla JS file shipped in ``static/``; every
response carries a strict Content-Security-Policy (see ``csp.py``). Review actions go through
the review API (``PATCH activities/<id>/flag/``), never through a path of their own.
"""

"""Acting on what detection finds: blocks and the verdict on a live request.

``blocks`` (create, look up with a per-process cache, lift), ``actions`` (blocks requested by
findings, made in the batch step), ``marks`` and ``enforce`` (refusing a request: the mark,
the 403), ``assess`` (``tracking.assess(request)`` for step-up), ``checks`` (settings).
``tracking.backends.TrackingBackend`` and ``tracking.middleware.TrackingMiddleware`` are the
entry points a project installs.
"""

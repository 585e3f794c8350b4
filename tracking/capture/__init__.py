"""Request time, no database: build an Event from a request and hand it off.

``decorators`` (``@track``), ``tracker`` (``ActivityTracker``), ``request`` (what is read from a
request and response), ``clientip`` (the trusted-proxy rule), ``context`` (request claims: one
request, one activity), ``paths`` (``TRACKING_PATHS`` for ``tracking.middleware``), ``auth``
(Django's auth signals) and ``changes`` (account changes; the one module here that reads the
database: the previous values of a changed account).
"""

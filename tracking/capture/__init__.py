"""Request time, no database: build an Event from a request and hand it off.

``decorators`` (``@track``), ``tracker`` (``ActivityTracker``), ``request`` (what is read from a
request and response), ``clientip`` (the trusted-proxy rule).
"""

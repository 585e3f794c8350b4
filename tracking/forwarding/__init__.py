"""Forwarders (``TRACKING_FORWARDERS``): every recorded activity, block and seal head sent to
a log server, at least once, each carrying its id (see docs/alerts-and-forwarding.md).
Transports: ``syslog`` (RFC 5424 over udp/tcp/tls), ``http`` (NDJSON batches: Elasticsearch
bulk, Splunk HEC, Loki), ``logging``; formats: ``cef``, ``ecs``, ``json``."""

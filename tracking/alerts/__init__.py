"""Alert channels (``TRACKING_ALERTS``): webhook, Slack, email or your own class, with
severity/type/tag filters, grouping, a rate limit, retries and dead letters
(see docs/alerts-and-forwarding.md). Delivery: ``tracking.alerts.dispatch``."""

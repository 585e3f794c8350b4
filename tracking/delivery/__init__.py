"""Telling people and systems: the outbox, the signals and who delivers alerts and forwards
(see docs/alerts-and-forwarding.md)."""

"""Subcommands of ``manage.py tracking`` (see ``tracking.management.commands.tracking``)."""

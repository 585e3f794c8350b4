"""The baseline: the bare project, no audit logging at all."""

from .settings_base import *  # noqa: F403

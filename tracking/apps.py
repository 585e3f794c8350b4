from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    label = "tracking"
    verbose_name = "Activity tracking"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tracking import checks  # noqa: F401  (registers system checks)
        from tracking.capture import auth, changes
        from tracking.capture import checks as capture_checks  # noqa: F401  (registers checks)
        from tracking.dashboard.admin_link import install_admin_link
        from tracking.delivery import hooks  # noqa: F401  (receivers of the block signals)
        from tracking.pipeline import handoff  # noqa: F401  (assembles the write path)
        from tracking.respond import actions

        install_admin_link()
        # Connected always; each receiver reads its setting when it runs, so
        # override_settings and late configuration work.
        auth.connect()
        changes.connect()
        # The batch step makes the blocks its findings request (inside the batch's transaction).
        actions.connect()

from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    label = "tracking"
    verbose_name = "Activity tracking"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tracking import checks  # noqa: F401  (registers system checks)
        from tracking.dashboard.admin_link import install_admin_link
        from tracking.pipeline import handoff  # noqa: F401  (assembles the write path)

        install_admin_link()

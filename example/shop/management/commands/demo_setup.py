"""``python example/manage.py demo_setup``: everything ``make demo`` needs before serving.

1. migrate the database;
2. build the demo GeoIP databases into ``GEOIP_PATH`` (from the synthetic world);
3. create (or update) the superuser ``admin``: password from ``DEMO_PASSWORD``, else a new
   random one, printed;
4. fill a few days of realistic traffic ending now (``tracking demo``: the simulator through
   the normal recording path, with takeovers, stuffing, spraying and a bulk export);
5. train the outlier model (``tracking train``) when that command is available;
6. print the URLs of the shop, the admin, the API and the dashboard.

Running it again changes nothing but the admin password (when generated) and tops the
traffic up to now: no duplicate data.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Prepare the demo: migrate, GeoIP databases, admin user, simulated traffic, model."
    # The checks would warn about the GeoIP databases this command is about to build.
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--users", type=int, default=int(os.environ.get("DEMO_USERS", 50)))
        parser.add_argument("--days", type=int, default=int(os.environ.get("DEMO_DAYS", 4)))
        parser.add_argument("--seed", type=int, default=int(os.environ.get("DEMO_SEED", 0)))
        parser.add_argument("--no-traffic", action="store_true", help="skip the traffic fill")
        parser.add_argument("--host", default=os.environ.get("DEMO_HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("DEMO_PORT", "8000"))

    def step(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {text}"))

    def handle(
        self,
        *args,
        users: int,
        days: int,
        seed: int,
        no_traffic: bool,
        host: str,
        port: str,
        **options,
    ) -> None:
        self.step("Migrating the database")
        call_command("migrate", interactive=False, verbosity=0)

        self.step(f"Building demo GeoIP databases in {settings.GEOIP_PATH}")
        from tracking.simulator.geoip import build_databases

        Path(settings.GEOIP_PATH).mkdir(parents=True, exist_ok=True)
        build_databases(settings.GEOIP_PATH)

        self.step("Creating the superuser 'admin'")
        password, generated = self.admin_password()
        admin = self.ensure_admin(password)
        from rest_framework.authtoken.models import Token

        token, _ = Token.objects.get_or_create(user=admin)

        if not no_traffic:
            from tracking.models import Activity, DetectorModel

            self.step(f"Filling demo traffic: {users} users, {days} days ending now")
            before = Activity.objects.count()
            call_command(
                "tracking",
                "demo",
                users=users,
                days=days,
                seed=seed,
                stdout=self.stdout._out,
                stderr=self.stderr._out,
            )
            changed = Activity.objects.count() != before or not DetectorModel.objects.exists()
            if changed and self.has_train():
                self.step("Training the outlier model (tracking train)")
                try:
                    call_command(
                        "tracking", "train", stdout=self.stdout._out, stderr=self.stderr._out
                    )
                except (Exception, SystemExit) as exc:  # the demo still runs
                    self.stderr.write(f"tracking train did not complete: {exc}")

        base = f"http://{host}:{port}"
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Demo ready."))
        self.stdout.write(f"  Shop:       {base}/")
        self.stdout.write(
            f"  Admin:      {base}/admin/  (activities: {base}/admin/tracking/activity/)"
        )
        self.stdout.write(
            f"  API:        {base}/api/tracking/activities/  (docs: {base}/api/tracking/docs/)"
        )
        self.stdout.write(f"  Dashboard:  {base}/api/tracking/dashboard/")
        self.stdout.write(
            "  Login:      admin / "
            + (password if generated else "(the password in DEMO_PASSWORD)")
        )
        if generated:
            self.stdout.write("              (generated; set DEMO_PASSWORD to choose it)")
        self.stdout.write(
            f'  API token:  curl -H "Authorization: Token {token.key}" {base}/api/tracking/activities/'
        )

    @staticmethod
    def admin_password() -> tuple[str, bool]:
        password = os.environ.get("DEMO_PASSWORD", "")
        if password:
            return password, False
        return secrets.token_urlsafe(12), True

    @staticmethod
    def ensure_admin(password: str):
        model = get_user_model()
        admin, _ = model._default_manager.get_or_create(
            **{model.USERNAME_FIELD: "admin"}, defaults={"email": "admin@example.com"}
        )
        changed = not (admin.is_staff and admin.is_superuser and admin.is_active)
        admin.is_staff = admin.is_superuser = admin.is_active = True
        if not admin.check_password(password):
            admin.set_password(password)
            changed = True
        if changed:  # a re-run changes nothing (and records no account change)
            admin.save()
        return admin

    @staticmethod
    def has_train() -> bool:
        from tracking.management.commands.tracking import _load

        try:
            return _load("train") is not None
        except ImportError:
            return False

"""Install the built sdist and wheel into fresh virtualenvs and smoke-test each.

    python .ci/smoke_package.py dist/

For each artifact in the folder (one ``*.tar.gz``, one ``*.whl``): a new venv outside the
checkout, ``pip install <artifact>``, then, from an empty directory (so the checkout is not on
``sys.path``), a minimal Django project that checks the installed files (templates, static
files, the rule pack, migrations, translations, ``py.typed``), imports ``tracking``, runs
``django.setup()``, ``manage.py check``, ``manage.py migrate`` on SQLite, loads the rule pack,
renders a dashboard template in Norwegian (the compiled catalog) and records one activity. Exits non-zero on the first
failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import venv
from pathlib import Path

SETTINGS = textwrap.dedent(
    """
    import base64, os
    SECRET_KEY = "smoke-test-only"
    DEBUG = False
    ALLOWED_HOSTS = ["*"]
    USE_TZ = True
    INSTALLED_APPS = [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
        "rest_framework",
        "rest_framework.authtoken",
        "django_filters",
        "tracking",
    ]
    MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
    ROOT_URLCONF = "smoke_urls"
    TEMPLATES = [{
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": [
            "django.template.context_processors.request",
            "django.contrib.auth.context_processors.auth",
            "django.contrib.messages.context_processors.messages",
        ]},
    }]
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(os.path.dirname(__file__), "smoke.sqlite3"),
    }}
    DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
    STATIC_URL = "/static/"
    TRACKING_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(os.urandom(32)).decode()]
    TRACKING_SEAL_KEYS = [base64.urlsafe_b64encode(os.urandom(32)).decode()]
    TRACKING_ASYNC_HANDOFF = "sync"
    TRACKING_SEAL_INTERVAL = 0
    TRACKING_SPOOL_DIR = os.path.join(os.path.dirname(__file__), "spool")
    """
)

URLS = textwrap.dedent(
    """
    from django.contrib import admin
    from django.urls import include, path

    urlpatterns = [
        path("admin/", admin.site.urls),
        path("api/tracking/", include("tracking.urls")),
    ]
    """
)

MANAGE = textwrap.dedent(
    """
    import os, sys
    from django.core.management import execute_from_command_line
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smoke_settings")
    execute_from_command_line(sys.argv)
    """
)

# Runs inside the fresh venv, from the project directory.
CHECKS = textwrap.dedent(
    """
    import importlib.metadata, os, sys
    from pathlib import Path

    os.environ["DJANGO_SETTINGS_MODULE"] = "smoke_settings"
    import tracking, detectors.rulepack

    root = Path(tracking.__file__).parent
    assert "site-packages" in str(root), f"tracking imported from the checkout: {root}"
    assert tracking.__version__ == importlib.metadata.version("django-activity-tracking")

    def present(base, pattern, what):
        found = sorted(base.glob(pattern))
        assert found, f"{what} missing: no {pattern} under {base}"
        return found

    present(root, "templates/tracking/dashboard/index.html", "dashboard template")
    present(root, "templates/tracking/blocked.html", "blocked page")
    present(root, "static/tracking/dashboard/blocks.js", "blocks script")
    present(root, "static/tracking/dashboard/dashboard.js", "dashboard script")
    present(root, "static/tracking/dashboard/dashboard.css", "dashboard stylesheet")
    present(root, "migrations/0001_initial.py", "migrations")
    present(root, "locale/nb/LC_MESSAGES/django.mo", "Norwegian translation")
    present(root, "py.typed", "tracking/py.typed")
    present(Path(detectors.rulepack.__file__).parent.parent, "py.typed", "detectors/py.typed")
    rules = present(Path(detectors.rulepack.__file__).parent, "*.yml", "rule pack")

    import django
    django.setup()

    from detectors.rules.loader import load_rules
    from tracking.detection.config import builtin_rule_dir
    loaded = load_rules([builtin_rule_dir()])
    assert len(loaded) == len(rules), (len(loaded), len(rules))

    from django.core.management import call_command
    from django.db import connection
    assert "tracking_activity" in connection.introspection.table_names()

    from django.template.loader import render_to_string
    from django.utils import translation
    with translation.override("nb"):
        page = render_to_string("tracking/dashboard/404.html", {})
    assert 'lang="nb"' in page and "Sikkerhetsdashbord" in page, page[:300]

    from tracking.events import Event
    from tracking.pipeline.ingest import ingest
    from tracking.models import Activity
    ingest([Event(type="AUTH", endpoint="/login/", method="POST", status=200, ip_address="192.0.2.1")])
    assert Activity.objects.count() == 1
    print("smoke ok:", tracking.__version__, "Django", django.get_version(),
          len(loaded), "rules", "from", root)
    """
)


# The checkout must not be importable (the Makefile exports PYTHONPATH=<checkout>).
CLEAN_ENV = {
    k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")
}


def run(*args: str | os.PathLike, cwd: Path | None = None) -> None:
    print("+", " ".join(map(str, args)), flush=True)
    subprocess.run([str(a) for a in args], cwd=cwd, check=True, env=CLEAN_ENV)


def smoke(artifact: Path, workdir: Path) -> None:
    env_dir = workdir / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", str(artifact.resolve()))
    project = workdir / "project"
    project.mkdir()
    (project / "smoke_settings.py").write_text(SETTINGS)
    (project / "smoke_urls.py").write_text(URLS)
    (project / "manage.py").write_text(MANAGE)
    (project / "smoke_checks.py").write_text(CHECKS)
    run(python, "manage.py", "check", "--fail-level", "WARNING", cwd=project)
    run(python, "manage.py", "migrate", "-v", "0", cwd=project)
    run(python, "manage.py", "tracking", "verify", cwd=project)
    run(python, "smoke_checks.py", cwd=project)


def main(dist: str) -> int:
    folder = Path(dist)
    artifacts = sorted(folder.glob("*.tar.gz")) + sorted(folder.glob("*.whl"))
    kinds = {a.suffix for a in artifacts}
    if kinds != {".gz", ".whl"} or len(artifacts) != 2:
        print(f"expected one sdist and one wheel in {folder}, found {artifacts}", file=sys.stderr)
        return 1
    for artifact in artifacts:
        print(f"== smoke test of {artifact.name}", flush=True)
        with tempfile.TemporaryDirectory(prefix="tracking-smoke-") as tmp:
            smoke(artifact, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dist"))

"""The supported Python x Django matrix: one ``tests`` session per pair.

    nox -l                                            # list the sessions
    nox -s "tests(py3.10-django4.2)"                  # one pair
    nox -s tests --reuse-existing-virtualenvs         # every pair (slow: ~9 full suites)

Each session installs the package with its ``dev`` extra and the newest release of the pair's
Django series into ``.nox/``, then runs the suite on SQLite (pass ``DATABASE_URL`` for
PostgreSQL). Extra arguments after ``--`` go to pytest. `.ci/run` runs the oldest and the
newest pair; docs/compatibility.md explains the matrix.
"""

from __future__ import annotations

import nox

# Django series -> Python versions it supports (Django's own support table).
SUPPORTED: dict[str, tuple[str, ...]] = {
    "4.2": ("3.10", "3.11", "3.12"),
    "5.2": ("3.10", "3.11", "3.12", "3.13"),
    "6.0": ("3.12", "3.13"),
}
PAIRS = [(python, django) for django, pythons in SUPPORTED.items() for python in pythons]

nox.options.sessions = ["tests"]


@nox.session
@nox.parametrize(
    "python,django",
    PAIRS,
    ids=[f"py{python}-django{django}" for python, django in PAIRS],
)
def tests(session: nox.Session, django: str) -> None:
    """The suite on one supported Python and Django pair."""
    major, minor = django.split(".")
    session.install("-e", ".[dev]", f"Django>={django},<{major}.{int(minor) + 1}")
    session.run(
        "python",
        "-c",
        "import sys, django; print(sys.version.split()[0], 'Django', django.get_version())",
    )
    session.run("python", "-m", "pytest", "-q", *session.posargs)

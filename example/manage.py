#!/usr/bin/env python
"""The example project's manage.py (run from anywhere: ``python example/manage.py ...``)."""

import os
import sys
from pathlib import Path


def main() -> None:
    here = Path(__file__).resolve().parent
    # The example's own packages, then the checkout (so an uninstalled checkout works too).
    for folder in (here, here.parent):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

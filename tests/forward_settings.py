"""Settings of a separate `manage.py tracking forward` process in tests/test_forwarding.py:
the test suite's, with the forwarders handed over in TRACKING_TEST_FORWARDERS."""

import json
import os

from tests.settings import *  # noqa: F403

TRACKING_FORWARDERS = json.loads(os.environ.get("TRACKING_TEST_FORWARDERS", "[]"))
TRACKING_DELIVERY = "manual"

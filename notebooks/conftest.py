"""nbval runs the dashboard notebook against a demo database at a fixed as-of time.

The hooks live in the plugin tests/support/dashboard.py (listed in tests/conftest.py);
this registers it when only ``pytest notebooks`` is run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PLUGIN = "tests.support.dashboard"


def pytest_configure(config):
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)

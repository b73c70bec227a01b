"""nbval runs the dashboard notebook against a demo database at a fixed as-of time.

The hooks live in tests/support/dashboard.py (a plugin listed in tests/conftest.py);
these forward to it so that ``pytest notebooks`` alone sets them up too (they run once
when both are loaded).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pytest_collection_finish(session):
    from tests.support import dashboard

    dashboard.pytest_collection_finish(session)


def pytest_unconfigure(config):
    from tests.support import dashboard

    dashboard.pytest_unconfigure(config)

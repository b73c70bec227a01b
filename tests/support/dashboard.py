"""pytest plugin: a demo gateway at a fixed as-of time, for the dashboard's tests and nbval.

Fixtures
--------
``demo_gateway`` (session): a `DemoGateway` (SQLite demo database, its router config and
    the fixed as-of time `DEMO_NOW`), built once per session in a temporary directory.
``dashboard_config`` (function): a factory ``dashboard_config(viewer, **changes)`` giving a
    `Settings` on that database at `DEMO_NOW`.

nbval
-----
Notebooks are collected with ``--nbval-lax`` (pyproject's addopts). Before a notebook's
kernel starts, a demo database is built (once) and the notebook's environment
(`Settings.to_env`: database, router config, viewer, zone, as-of time) points at it,
only while nbval starts the kernel.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

#: The as-of time of every dashboard test: a Tuesday noon, UTC.
DEMO_NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
DEMO_REQUESTS = 20_000
DEMO_SEED = 7



@dataclass(frozen=True)
class DemoGateway:
    path: Path
    url: str
    router_config: Path
    now: datetime = DEMO_NOW


def build_demo_gateway(directory: Path) -> DemoGateway:
    from usage_lib.demo import build_demo, demo_paths

    path = directory / "demo.sqlite3"
    url, router = demo_paths(path)
    build_demo(url, router, requests=DEMO_REQUESTS, seed=DEMO_SEED, now=DEMO_NOW)
    return DemoGateway(path=path, url=url, router_config=router)


@pytest.fixture(scope="session")
def demo_gateway(tmp_path_factory) -> DemoGateway:
    return build_demo_gateway(tmp_path_factory.mktemp("demo-gateway"))


@pytest.fixture
def dashboard_config(demo_gateway):
    from usage_lib.core.usage import Selection
    from usage_lib.settings import Settings

    def make(viewer: str, **changes) -> Settings:
        settings = Settings(
            db_url=demo_gateway.url,
            router_config=demo_gateway.router_config,
            viewer=viewer,
            view=Selection(tz="UTC", now=DEMO_NOW),
            demo=True,
        )
        return replace(settings, **changes)

    return make


@pytest.fixture
def refreshed_dashboards(dashboard_config):
    """Factory: a refreshed Dashboard for `viewer` and `selection` (closed after the test)."""
    from usage_lib.ui.dashboard import Dashboard

    made: list = []

    def make(viewer: str, selection=None, **kwargs):
        dashboard = Dashboard(dashboard_config(viewer), selection, **kwargs)
        made.append(dashboard)
        dashboard.refresh()
        return dashboard

    yield make
    for dashboard in made:
        dashboard.close()


# -- nbval ---------------------------------------------------------------------------------

_notebook_demo: list[DemoGateway] = []
_notebook_dir: list[Path] = []


def _is_notebook_item(item) -> bool:
    return type(item).__module__.startswith("nbval")


def notebook_environment() -> dict[str, str]:
    """The notebook's configuration: the demo gateway at DEMO_NOW, as its global admin."""
    from usage_lib.core.usage import Selection
    from usage_lib.demo import DEMO_ADMIN_EMAIL
    from usage_lib.settings import Settings

    if not _notebook_demo:
        directory = Path(tempfile.mkdtemp(prefix="aqueduct-nbval-"))
        _notebook_dir.append(directory)
        _notebook_demo.append(build_demo_gateway(directory))
    demo = _notebook_demo[0]
    settings = Settings(db_url=demo.url, router_config=demo.router_config, viewer=DEMO_ADMIN_EMAIL,
                        view=Selection(tz="UTC", now=DEMO_NOW), demo=True)
    return settings.to_env()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """nbval starts a notebook's kernel while setting up its first cell: only then does
    the process environment hold the notebook's variables (the kernel inherits them), so
    no other test sees them."""
    if not _is_notebook_item(item):
        yield
        return
    from usage_lib.settings import ENV_NAMES

    saved = {name: os.environ.pop(name, None) for name in (*ENV_NAMES, "QUERY_STRING")}
    os.environ.update(notebook_environment())
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def pytest_unconfigure(config):
    for directory in _notebook_dir:
        shutil.rmtree(directory, ignore_errors=True)
    _notebook_dir.clear()
    _notebook_demo.clear()

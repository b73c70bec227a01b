"""The served page: what the dashboard notebook runs in its kernel.

`page_from_env` reads the settings Voila's kernel inherited (`Settings.from_env`), who is
looking (`identity`), and what the URL asks for (``QUERY_STRING``: org, span, token,
top, range, time zone, auto-refresh, section); `open_page` shows the dashboard for them. Logs go to the server's log, never to
the page.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Mapping

from voila.utils import wait_for_request

from usage_lib.core.urlstate import refresh_from_query, section_from_query, selection_from_query
from usage_lib.core.usage import Selection
from usage_lib.errors import UsageError
from usage_lib.serving.identity import resolve_viewer
from usage_lib.settings import ENV_LOG_LEVEL, Settings
from usage_lib.ui.dashboard import Dashboard, show_dashboard

#: Set by Voila in its kernels' environment (preheated ones too): the page is Voila's.
ENV_VOILA_BASE_URL = "VOILA_BASE_URL"
ENV_QUERY_STRING = "QUERY_STRING"


@dataclass(frozen=True)
class Page:
    """One page view: where and as whom, and what it opens with."""

    settings: Settings
    viewer: str | None
    selection: Selection
    #: Configuration or sign-in problems, shown instead of figures.
    problem: str | None
    #: Served by Voila: the address follows the view (JupyterLab's address is its own).
    follow_address: bool
    #: The auto-refresh the URL asks for (checked by the dashboard).
    refresh: str
    #: The section the URL asks for (`view=health`; default the usage one).
    section: str = "usage"


def page_from_env(env: Mapping[str, str]) -> Page:
    """The page `env` describes; never raises (problems are shown on the page)."""
    settings = Settings.from_env(env)
    problems = list(settings.problems)
    viewer = None
    try:
        viewer = resolve_viewer(settings, env)
    except UsageError as exc:
        problems.append(str(exc))
    return Page(
        settings=settings,
        viewer=viewer,
        selection=selection_from_query(env.get(ENV_QUERY_STRING), settings.view),
        problem="; ".join(problems) or None,
        follow_address=ENV_VOILA_BASE_URL in env,
        refresh=refresh_from_query(env.get(ENV_QUERY_STRING)),
        section=section_from_query(env.get(ENV_QUERY_STRING)),
    )


def open_page() -> Dashboard:
    """Show this kernel's dashboard. In a kernel Voila started ahead of its visitor
    (preheated), this first waits for the page request, whose query string Voila then
    puts into the environment (`wait_for_request` returns at once otherwise)."""
    wait_for_request()
    log_to_server()
    page = page_from_env(os.environ)
    return show_dashboard(page.settings, page.selection, viewer=page.viewer, problem=page.problem,
                          follow_address=page.follow_address, tz=page.selection.tz, refresh=page.refresh,
                          section=page.section)


def log_to_server() -> None:
    """Inside a kernel sys.stderr is the notebook's output; the package's logs (refused
    choices, failed refreshes) belong in the server's."""
    package_log = logging.getLogger("usage_lib")
    if package_log.handlers:
        return
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s %(message)s"))
    package_log.addHandler(handler)
    level = os.environ.get(ENV_LOG_LEVEL, "").strip().upper()
    package_log.setLevel(level if isinstance(logging.getLevelName(level), int) else logging.INFO)
    package_log.propagate = False

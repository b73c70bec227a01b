"""Voila's prelaunch hook (the one place a served page learns who is looking), and when
kernels may be started ahead of visitors instead.

Runs in the Voila server once per page request, before the kernel starts, on a fresh
copy of the notebook. In header mode it answers 403 when the proxy's identity header is
missing or malformed, and otherwise inserts a first cell that tells the kernel the
viewer. The value cannot come from the URL: a query string reaches the kernel only as
`QUERY_STRING`, which `usage_lib.core.urlstate` reads for org, span, token and top alone.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping

import nbformat
from tornado.web import HTTPError

from usage_lib.serving.identity import clean_identity
from usage_lib.settings import IDENTITY_MODES, Settings

log = logging.getLogger(__name__)


def may_preheat(env: Mapping[str, str]) -> bool:
    """Whether the server may run kernels ahead of the page requests (Voila's preheated
    kernels): only when every page shows the same viewer, i.e. a valid `fixed` or
    `jupyterhub` identity mode. Voila skips the prelaunch hook for a preheated kernel, so
    header mode (and a mistyped mode, which the hook refuses) keeps the hook instead.
    """
    identity = Settings.from_env(env).identity
    return identity in IDENTITY_MODES and identity != "header"


def prelaunch_hook(req, notebook, cwd):
    settings = Settings.from_env(os.environ)
    if settings.identity == "fixed" or settings.identity == "jupyterhub":
        return notebook
    values = req.request.headers.get_list(settings.identity_header)
    viewer = clean_identity(values[0]) if len(values) == 1 and settings.identity == "header" else None
    if viewer is None:
        log.warning(
            "refused %s from %s: %s header %s",
            req.request.uri,
            req.request.remote_ip,
            settings.identity_header,
            "missing" if not values else "malformed",
        )
        raise HTTPError(403, reason="Sign-in required")
    cell = nbformat.v4.new_code_cell(
        f"import usage_lib.serving.identity\nusage_lib.serving.identity.trust_viewer({viewer!r})",
        metadata={"tags": ["aqueduct-identity"]},
    )
    notebook.cells.insert(0, cell)
    return notebook

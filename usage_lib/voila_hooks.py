"""Voila's prelaunch hook (the one place a served page learns who is looking), and when
kernels may be started ahead of visitors instead.

Runs in the Voila server once per page request, before the kernel starts, on a fresh
copy of the notebook. In header mode it answers 403 when the proxy's identity header is
missing or malformed, and otherwise inserts a first cell that tells the kernel the
viewer. The value cannot come from the URL: a query string reaches the kernel only as
`QUERY_STRING`, which `usage_lib.urlstate` reads for org, span, token and top alone.
"""

from __future__ import annotations

import logging
import os

import nbformat
from tornado.web import HTTPError

from usage_lib.errors import UsageError
from usage_lib.identity import clean_identity, identity_config

log = logging.getLogger("usage_lib.voila_hooks")


def may_preheat(env) -> bool:
    """Whether the server may run kernels ahead of the page requests (Voila's preheated
    kernels): only when every page shows the same viewer, i.e. a valid `fixed` or
    `jupyterhub` identity mode. Voila skips the prelaunch hook for a preheated kernel, so
    header mode (and a mistyped mode, which the hook refuses) keeps the hook instead.
    """
    try:
        return identity_config(env).mode != "header"
    except UsageError:
        return False


def prelaunch_hook(req, notebook, cwd):
    config = identity_config(os.environ)
    if config.mode != "header":
        return notebook
    values = req.request.headers.get_list(config.header)
    viewer = clean_identity(values[0]) if len(values) == 1 else None
    if viewer is None:
        log.warning(
            "refused %s from %s: %s header %s",
            req.request.uri,
            req.request.remote_ip,
            config.header,
            "missing" if not values else "malformed",
        )
        raise HTTPError(403, reason="Sign-in required")
    cell = nbformat.v4.new_code_cell(
        f"import usage_lib.identity\nusage_lib.identity.trust_viewer({viewer!r})",
        metadata={"tags": ["aqueduct-identity"]},
    )
    notebook.cells.insert(0, cell)
    return notebook

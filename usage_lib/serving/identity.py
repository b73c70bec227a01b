"""Who is looking at a served dashboard: from a trusted proxy header, JupyterHub, or a
fixed local viewer. Never from the URL.

The operator picks the source with `Settings.identity` (``AQUEDUCT_IDENTITY`` in Voila's
environment, which the kernels inherit):

- ``header``: an authenticating reverse proxy sets `Settings.identity_header` on every
  request. `usage_lib.serving.voila_hooks.prelaunch_hook` reads it before the kernel
  starts, answers 403 when it is missing or malformed, and hands the value to the kernel
  by inserting a first cell that calls `trust_viewer`. A configured fixed viewer is
  ignored in this mode.
- ``jupyterhub``: the Hub user owning the single-user server (``JUPYTERHUB_USER``),
  matched to a gateway username or email.
- ``fixed`` (the default): `Settings.viewer`, for single-user use (on the demo database,
  the demo's global admin unless set).
"""

from __future__ import annotations

import re
from typing import Mapping

from usage_lib.errors import UsageError
from usage_lib.settings import ENV_VIEWER, IDENTITY_MODES, Settings

#: Set by JupyterHub in a single-user server's environment.
ENV_HUB_USER = "JUPYTERHUB_USER"

# An email address or a Django username: printable, no spaces, quotes, commas or
# angle brackets (a proxy joining several values with commas gives a malformed value).
_IDENTITY = re.compile(r"[A-Za-z0-9.!#$%&*+/=?^_`{|}~@-]{1,254}")


class SignInRequired(UsageError):
    """No trustworthy identity reached the dashboard."""


def clean_identity(value: object) -> str | None:
    """The identity in a header value, or None when it is missing or malformed."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if _IDENTITY.fullmatch(value) else None


_trusted_viewer: str | None = None


def trust_viewer(viewer: str) -> None:
    """Called by the cell the prelaunch hook inserts; the kernel's only source in header mode."""
    global _trusted_viewer
    cleaned = clean_identity(viewer)
    if cleaned is None:
        raise SignInRequired("sign-in required: the identity header is malformed")
    _trusted_viewer = cleaned


def resolve_viewer(settings: Settings, env: Mapping[str, str]) -> str:
    """The viewer of this kernel's dashboard, as `settings.identity` says (`env` holds
    JupyterHub's variables). An unknown source lets nobody in."""
    if settings.identity not in IDENTITY_MODES:
        raise SignInRequired(f"sign-in required: unknown identity source {settings.identity!r}")
    if settings.identity == "header":
        if _trusted_viewer is None:
            raise SignInRequired(f"sign-in required: no {settings.identity_header} header from the proxy")
        return _trusted_viewer
    if settings.identity == "jupyterhub":
        user = clean_identity(env.get(ENV_HUB_USER))
        if user is None:
            raise SignInRequired("sign-in required: not running in a JupyterHub single-user server")
        return user
    if settings.viewer:
        return settings.viewer
    raise SignInRequired(f"no viewer configured: set {ENV_VIEWER} to a gateway user's email or username")

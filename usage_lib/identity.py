"""Who is looking at a served dashboard: from a trusted proxy header, JupyterHub, or a
fixed local viewer. Never from the URL.

Set by the operator in the Voila server's environment (the kernels inherit it):

- `AQUEDUCT_IDENTITY=header` (with `AQUEDUCT_IDENTITY_HEADER`, default
  `X-Forwarded-Email`): an authenticating reverse proxy sets the header on every
  request. `usage_lib.voila_hooks.prelaunch_hook` reads it before the kernel starts,
  answers 403 when it is missing or malformed, and hands the value to the kernel by
  inserting a first cell that calls `trust_viewer`. The kernel ignores any
  `AQUEDUCT_VIEWER` in this mode.
- `AQUEDUCT_IDENTITY=jupyterhub`: the Hub user owning the single-user server
  (`JUPYTERHUB_USER`), matched to a gateway username or email.
- `AQUEDUCT_IDENTITY=fixed` (the default): `AQUEDUCT_VIEWER`, for single-user use. Only
  in demo mode (`AQUEDUCT_DEMO=1`, set by `usage-dashboard serve` on the demo database)
  does an unset viewer mean the demo's global admin.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Mapping

from usage_lib.errors import UsageError

log = logging.getLogger("usage_lib.identity")

MODES = ("header", "jupyterhub", "fixed")
DEFAULT_HEADER = "X-Forwarded-Email"

# An email address or a Django username: printable, no spaces, quotes, commas or
# angle brackets (a proxy joining several values with commas gives a malformed value).
_IDENTITY = re.compile(r"[A-Za-z0-9.!#$%&*+/=?^_`{|}~@-]{1,254}")


class SignInRequired(UsageError):
    """No trustworthy identity reached the dashboard."""


@dataclass(frozen=True)
class IdentityConfig:
    mode: str = "fixed"
    header: str = DEFAULT_HEADER
    fixed_viewer: str | None = None
    demo: bool = False


def identity_config(env: Mapping[str, str]) -> IdentityConfig:
    mode = env.get("AQUEDUCT_IDENTITY", "fixed").strip().lower() or "fixed"
    if mode not in MODES:
        raise UsageError(f"AQUEDUCT_IDENTITY must be one of {', '.join(MODES)}, not {mode!r}")
    return IdentityConfig(
        mode=mode,
        header=env.get("AQUEDUCT_IDENTITY_HEADER", DEFAULT_HEADER).strip() or DEFAULT_HEADER,
        fixed_viewer=env.get("AQUEDUCT_VIEWER") or None,
        demo=env.get("AQUEDUCT_DEMO") == "1",
    )


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


def resolve_viewer_name(env: Mapping[str, str], demo_viewer: str | None = None) -> str:
    """The viewer of this kernel's dashboard, as the configured identity source says."""
    config = identity_config(env)
    if config.mode == "header":
        if _trusted_viewer is None:
            raise SignInRequired(f"sign-in required: no {config.header} header from the proxy")
        return _trusted_viewer
    if config.mode == "jupyterhub":
        user = clean_identity(env.get("JUPYTERHUB_USER"))
        if user is None:
            raise SignInRequired("sign-in required: not running in a JupyterHub single-user server")
        return user
    if config.fixed_viewer:
        return config.fixed_viewer
    if config.demo and demo_viewer:
        return demo_viewer
    raise SignInRequired("no viewer configured: set AQUEDUCT_VIEWER to a gateway user's email or username")

"""Dashboard state in the URL: the gateway's `?org=&span=&token=` (plus `top`), never identity.

Values are passed on as requested; `compute_usage` checks them against the viewer's
role on every refresh and falls back as SPEC §2 says, so garbage is harmless here.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlencode

from usage_lib.core.usage import Selection
from usage_lib.core.spans import DEFAULT_SPAN

log = logging.getLogger("usage_lib.core.urlstate")

STATE_KEYS = ("org", "span", "token", "top")
IDENTITY_KEYS = ("viewer", "user", "email", "username", "as", "identity")


def selection_from_query(query: str | None, base: Selection) -> Selection:
    """Overlay the URL's org, span, token and top on `base`; identity keys are ignored and logged."""
    params = parse_qs(query or "", keep_blank_values=True)
    smuggled = sorted(key for key in params if key.lower() in IDENTITY_KEYS)
    if smuggled:
        log.warning("ignored identity in the URL query: %s", ", ".join(smuggled))
    first = {key: values[0] for key, values in params.items() if key in STATE_KEYS and values}
    return Selection(
        org=first.get("org", base.org) or base.org,
        span=first.get("span", base.span) or DEFAULT_SPAN,
        token=first.get("token", base.token) or None,
        top=first.get("top", base.top),
        tz=base.tz,
        now=base.now,
    )


def query_for(org: object, span: str, token: object, top: int) -> str:
    """The query string that reopens this view (no identity, no time)."""
    params = {"org": "all" if org is None else org, "span": span}
    if token is not None:
        params["token"] = token
    params["top"] = top
    return urlencode(params)

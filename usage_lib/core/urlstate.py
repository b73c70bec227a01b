"""Dashboard state in the URL: the gateway's `?org=&span=&token=` (plus `top`, and `start`
and `end` for a custom range), never identity.

Values are passed on as requested; `compute_usage` checks them against the viewer's
role on every refresh and falls back as SPEC §2 says, so garbage is harmless here.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from urllib.parse import parse_qs, urlencode

from usage_lib.core.usage import Selection
from usage_lib.core.spans import DEFAULT_SPAN

log = logging.getLogger(__name__)

STATE_KEYS = ("org", "span", "token", "top", "start", "end")
IDENTITY_KEYS = ("viewer", "user", "email", "username", "as", "identity")
#: A time's `+01:00` offset typed into an address unencoded arrives as a space.
_SPACED_OFFSET = re.compile(r"(:\d\d(?:\.\d+)?) (\d\d(?::?\d\d)?)$")


def _time(value: str | None) -> str | None:
    """A `start`/`end` value as given (checked by the core), its offset's `+` restored."""
    if not value:
        return None
    return _SPACED_OFFSET.sub(r"\1+\2", value.strip())


def selection_from_query(query: str | None, base: Selection) -> Selection:
    """Overlay the URL's org, span, token, top and range on `base`; identity keys are
    ignored and logged. `start`/`end` replace the span (both or neither: the core says
    what is wrong with a range)."""
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
        start=_time(first.get("start")),
        end=_time(first.get("end")),
    )


def query_for(org: object, span: str, token: object, top: int,
              start: datetime | None = None, end: datetime | None = None) -> str:
    """The query string that reopens this view (no identity, no as-of time): `start` and
    `end` (ISO 8601 with offset) instead of `span` for a custom range."""
    params: dict[str, object] = {"org": "all" if org is None else org}
    if start is not None and end is not None:
        params["start"] = start.isoformat()
        params["end"] = end.isoformat()
    else:
        params["span"] = span
    if token is not None:
        params["token"] = token
    params["top"] = top
    return urlencode(params)

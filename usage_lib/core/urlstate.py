"""Dashboard state in the URL: the gateway's `?org=&span=&token=` (plus `top`, `start`
and `end` for a custom range, `tz`, the viewer's time zone, and `refresh`, the page's
auto-refresh interval), never identity.

Values are passed on as requested; `compute_usage` checks them against the viewer's
role on every refresh and falls back as SPEC §2 says, so garbage is harmless here. The
zone is checked by the page (`zone_or_default`): an unknown one falls back to the
operator's zone with a note, and the operator's zone is never written into the URL, so
addresses made before there was a zone picker stay as they were. Auto-refresh is off
unless the address says otherwise (`refresh=30s|1m|5m`, `REFRESH_INTERVALS`); an unknown
interval is off, with a note (`refresh_or_off`). It is a setting of the page, not part of
the view: Back and Forward keep it. So is the section shown (`view=health`, `SECTIONS`;
without it, or an unknown one, the usage section: `section_from_query`).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from functools import lru_cache
from urllib.parse import parse_qs, urlencode
from zoneinfo import available_timezones

from usage_lib.core.usage import Selection
from usage_lib.core.spans import DEFAULT_SPAN

log = logging.getLogger(__name__)

#: The auto-refresh key and its choices: value -> seconds between two refreshes.
REFRESH_KEY = "refresh"
REFRESH_OFF = "off"
REFRESH_INTERVALS = {"30s": 30, "1m": 60, "5m": 300}

#: The section key and its choices (issue 15): the usage figures (the default, never
#: written) or the gateway's health.
VIEW_KEY = "view"
USAGE_SECTION = "usage"
HEALTH_SECTION = "health"
SECTIONS = (USAGE_SECTION, HEALTH_SECTION)

STATE_KEYS = ("org", "span", "token", "top", "start", "end", "tz", REFRESH_KEY, VIEW_KEY)
IDENTITY_KEYS = ("viewer", "user", "email", "username", "as", "identity")
#: A time's `+01:00` offset typed into an address unencoded arrives as a space.
_SPACED_OFFSET = re.compile(r"(:\d\d(?:\.\d+)?) (\d\d(?::?\d\d)?)$")


def _time(value: str | None) -> str | None:
    """A `start`/`end` value as given (checked by the core), its offset's `+` restored."""
    if not value:
        return None
    return _SPACED_OFFSET.sub(r"\1+\2", value.strip())


#: Names in the zone database that are no place's zone: this machine's own setting and
#: tzdata's placeholders.
NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


@lru_cache(maxsize=1)
def iana_zones() -> frozenset[str]:
    """Every IANA zone name this machine knows (`zoneinfo.available_timezones`, read once)."""
    return frozenset(available_timezones()) - NOT_ZONES


def zone_or_default(requested: object, default: str) -> tuple[str, str | None]:
    """The zone to show for a `requested` one (from a URL, a picker, a Back button):
    itself if it is `default` (the operator's zone) or an IANA zone, else `default` and
    the note saying so, as `Selection.normalised` notes an unknown span."""
    if requested == default or (isinstance(requested, str) and requested in iana_zones()):
        return requested, None
    return default, f"unknown time zone {_shown(requested)!r}; showing {default}"


def _shown(requested: object) -> str:
    """A refused value as a note quotes it: cut after 80 characters."""
    text = str(requested)
    return text if len(text) <= 80 else f"{text[:80]}\u2026"


def refresh_from_query(query: str | None) -> str:
    """The URL's auto-refresh interval as given (`refresh_or_off` checks it); off without one."""
    values = parse_qs(query or "", keep_blank_values=True).get(REFRESH_KEY, [""])
    return values[0].strip() or REFRESH_OFF


def refresh_or_off(requested: object) -> tuple[str, str | None]:
    """The auto-refresh for a `requested` one: itself if it is off or one of
    `REFRESH_INTERVALS`, else off and the note saying so."""
    if requested == REFRESH_OFF or (isinstance(requested, str) and requested in REFRESH_INTERVALS):
        return requested, None
    return REFRESH_OFF, f"unknown auto-refresh interval {_shown(requested)!r}; auto-refresh is off"


def section_from_query(query: str | None) -> str:
    """The section the URL asks for: `HEALTH_SECTION` for ``view=health``; the usage
    section without the key or for any other value (a section is no secret: nothing to
    note)."""
    values = parse_qs(query or "", keep_blank_values=True).get(VIEW_KEY, [""])
    requested = values[0].strip().lower()
    return requested if requested in SECTIONS else USAGE_SECTION


def selection_from_query(query: str | None, base: Selection) -> Selection:
    """Overlay the URL's org, span, token, top, range and zone on `base`; identity keys are
    ignored and logged. `start`/`end` replace the span (both or neither: the core says
    what is wrong with a range). The zone is passed on as given (`zone_or_default`
    checks it); without one, `base`'s."""
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
        tz=first.get("tz", "").strip() or base.tz,
        now=base.now,
        start=_time(first.get("start")),
        end=_time(first.get("end")),
    )


def query_for(org: object, span: str, token: object, top: int,
              start: datetime | None = None, end: datetime | None = None,
              *, tz: str | None = None, default_tz: str | None = None, refresh: str = REFRESH_OFF,
              section: str = USAGE_SECTION) -> str:
    """The query string that reopens this view (no identity, no as-of time): `start` and
    `end` (ISO 8601 with offset) instead of `span` for a custom range; `tz` unless it is
    `default_tz`, the operator's zone (which a URL without `tz` means); `refresh` unless
    auto-refresh is off; `view` unless the section is the usage one."""
    params: dict[str, object] = {"org": "all" if org is None else org}
    if start is not None and end is not None:
        params["start"] = start.isoformat()
        params["end"] = end.isoformat()
    else:
        params["span"] = span
    if token is not None:
        params["token"] = token
    params["top"] = top
    if tz and tz != default_tz:
        params["tz"] = tz
    if refresh != REFRESH_OFF:
        params[REFRESH_KEY] = refresh
    if section != USAGE_SECTION:
        params[VIEW_KEY] = section
    return urlencode(params)

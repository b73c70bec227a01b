"""Hostile input (issue 16 item 3), without a browser (tests/test_e2e_hostile.py has one).

- Whatever a URL's query string or a forged widget message asks for, the dashboard shows
  at most the viewer's own view (SPEC §2: anything not allowed falls back to their own
  org), never raises into the page, and no value from them reaches the text of a SQL
  statement.
- Names from the gateway (orgs, tokens, service accounts, emails, user_ids, models)
  holding HTML, script, quotes, newlines, bidi marks, 10 kB or a spreadsheet formula are
  shown as the text they are: escaped in the page, its table, chart labels and tooltips
  and the offline snapshot, written visibly in the text report, kept exactly in JSON and
  CSV, and never a formula in CSV.
- An identity header that is missing, empty, repeated, padded, of another case or of an
  inactive user gives a 403 or its own viewer, never another one.

The URL and identity properties run on `build_tiny_org`, whose tokens' requests come in
distinct powers of two: a total names exactly the requests it counted, so "at most the
own view" is `total & ~own == 0`. Hypothesis examples are few and reproducible
(HOSTILE_EXAMPLES=N scales them, HOSTILE_RANDOM=1 explores new ones).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, replace
from datetime import timedelta
from html.parser import HTMLParser
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st
from ipywidgets.embed import dependency_state
from tornado.httputil import HTTPHeaders, HTTPInputError
from tornado.web import HTTPError

import nbformat

from tests.support.gateway import NOW, GatewayBuilder, build_tiny_org, sqlite_url
from usage_lib.core.health import compute_health
from usage_lib.core.spans import LONGEST_RANGE
from usage_lib.core.urlstate import IDENTITY_KEYS, STATE_KEYS, selection_from_query
from usage_lib.core.usage import Selection, compute_usage
from usage_lib.errors import UsageError
from usage_lib.gateway.db import open_database
from usage_lib.render.files import Report, file_stem, render_csv, render_json
from usage_lib.render.offline_page import snapshot_html
from usage_lib.render.text import text
from usage_lib.serving import identity
from usage_lib.serving.page import page_from_env
from usage_lib.serving.voila_hooks import prelaunch_hook
from usage_lib.settings import Settings
from usage_lib.ui.dashboard import Dashboard

EXAMPLES = float(os.environ.get("HOSTILE_EXAMPLES", "1"))


def examples(count: int) -> settings:
    """A property's settings: `count` examples (scaled by HOSTILE_EXAMPLES), no deadline
    (the database answers in its own time), reproducible unless HOSTILE_RANDOM=1."""
    return settings(
        max_examples=max(1, round(count * EXAMPLES)),
        deadline=None,
        derandomize=not os.environ.get("HOSTILE_RANDOM"),
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# -- the tiny organisation, once for the module -------------------------------------------

ACME_ADMIN, ORG_ADMIN, URSULA, UWE, BERT, NADIA = (
    "root@example.org", "olga@example.org", "ursula@example.org", "uwe", "bert@example.org", "nadia")
#: Ursula's own requests in `build_tiny_org`: her token, her team's bot, her email on uwe's.
URSULA_OWN = 1 + 4 + 64
#: Everyone below a global admin: fixed to their own org (SPEC §2).
FIXED_TO_OWN_ORG = (ORG_ADMIN, URSULA, UWE, BERT, NADIA)
#: In no statement we write: a value carrying it must never show up in SQL text.
SENTINEL = "\u2042"


@dataclass
class Tiny:
    url: str
    org: object  # TinyOrg
    #: (user id, username, email, active) of every user.
    users: tuple[tuple[int, str, str, bool], ...]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Tiny:
    """`build_tiny_org`, plus users who own no token: an inactive one, two sharing an
    email (one inactive), and one whose username is another's email in other letters."""
    builder = GatewayBuilder(sqlite_url(tmp_path_factory.mktemp("hostile") / "tiny.sqlite3"))
    org = build_tiny_org(builder)
    acme, beta = org.orgs["Acme"], org.orgs["Beta"]
    builder.user("ivan", role="user", org=acme, active=False)
    builder.user("dora", "dora@example.org", role="user", org=acme)
    builder.user("dora-old", "dora@example.org", role="org-admin", org=acme, active=False)
    builder.user("Ursula@Example.org", "casey@example.org", role="user", org=beta)
    with builder.engine.connect() as conn:
        users = tuple(tuple(row) for row in conn.exec_driver_sql(
            "SELECT id, username, email, is_active FROM auth_user ORDER BY id"))
    builder.close()
    return Tiny(url=org.url, org=org, users=tuple((i, u, e, bool(a)) for i, u, e, a in users))


@pytest.fixture(scope="module")
def tiny_db(tiny):
    db = open_database(tiny.url)
    yield db
    db.close()


@pytest.fixture(scope="module")
def own_view(tiny_db):
    """Viewer -> the requests of their own default view (a sum of powers of two)."""
    cache: dict[str, int] = {}

    def own(viewer: str) -> int:
        if viewer not in cache:
            cache[viewer] = compute_usage(tiny_db, viewer, Selection(now=NOW)).metrics.total_requests
        return cache[viewer]

    return own


def within(counted: int, own: int) -> bool:
    """Every request counted is one of the own view's (`build_tiny_org`'s powers of two)."""
    return counted & ~own == 0


def one_line(message: str | None) -> bool:
    """A refusal the page can show: one line, ours (not an unexpected error)."""
    return message is None or ("\n" not in message and not message.startswith("unexpected error"))


def sql_since(db, mark: int) -> str:
    return "\n".join(db.statements.log[mark:])


# -- query strings -----------------------------------------------------------------------

SQL_PAYLOADS = (
    f"{SENTINEL}' OR '1'='1",
    f"1{SENTINEL}); DROP TABLE management_request; --",
    f'{SENTINEL}" OR 1=1 --',
    f"2 UNION SELECT password FROM auth_user {SENTINEL}",
    f"all{SENTINEL}",
)
MARKUP = ("<script>window.__pwned=1</script>", '<img src=x onerror="alert(1)">', "\"'><b>", "&amp;&#0;")
HUGE = ("9" * 20_000, "a" * 20_000, SENTINEL * 5_000)


def query_values(tiny: Tiny) -> st.SearchStrategy[str]:
    ids = {str(i) for i in (*tiny.org.orgs.values(), *tiny.org.tokens.values(), *tiny.org.users.values())}
    meaningful = sorted(ids) + [
        "all", "ALL", " all ", "Acme", "Beta", "Empty", "acme", "-1", "0", "007", "1e3", "0x10", "99999999999999999999999",
        "1h", "1d", "1w", "1m", "1y", "", " ", "10", "25", "100", "7", "10.0", "Europe/Vienna", "America",
        "../../../etc/passwd", "UTC\x00", "health", "HEALTH", "usage", "30s", "5m", "off",
        "2026-11-24T11:00", "2026-11-24T10:00+01:00", "2026-11-24 11:30", "2026-11-24T12:00:00Z", "2026-11-24T11:00 01:00",
        "9999-12-31", "0001-01-01", "2026-02-30", "2026-11-24T11:00+99:00", "NaN", "inf",
    ]
    return st.one_of(
        st.sampled_from(meaningful),
        st.sampled_from(SQL_PAYLOADS + MARKUP + HUGE),
        st.text(max_size=30),
        st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), max_size=8),
        st.integers(-(2**70), 2**70).map(str),
    )


def query_keys() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([*STATE_KEYS, *STATE_KEYS, *IDENTITY_KEYS, "ORG", "Span", "org ", " token", "org[]", "x"]),
        st.text(max_size=10),
    )


def query_strings(tiny: Tiny) -> st.SearchStrategy[str]:
    """Any keys (the dashboard's, identity ones, others), repeated, with any values; or
    any text at all, percent signs and ampersands included."""
    pairs = st.lists(st.tuples(query_keys(), query_values(tiny)), max_size=8)
    return st.one_of(pairs.map(urlencode), pairs.map(lambda p: "&".join(f"{k}={v}" for k, v in p)),
                     st.text(max_size=60))


def page_env(tiny: Tiny, viewer: str, query: str) -> dict[str, str]:
    """A served page's environment: this gateway, a fixed viewer, the query string."""
    return {"AQUEDUCT_DB_URL": tiny.url, "AQUEDUCT_VIEWER": viewer, "AQUEDUCT_NOW": NOW.isoformat(),
            "QUERY_STRING": query}


def served_dashboard(tiny: Tiny, viewer: str, query: str) -> Dashboard:
    """The dashboard a page served with `query` shows (as `serving.page.open_page`
    builds it, without displaying it), refreshed."""
    page = page_from_env(page_env(tiny, viewer, query))
    dashboard = Dashboard(page.settings, page.selection, viewer=page.viewer, problem=page.problem,
                          tz=page.selection.tz, refresh=page.refresh, section=page.section)
    dashboard.refresh()
    return dashboard


def shown_requests(dashboard: Dashboard) -> int:
    """The requests behind the figures of the section shown (0 when none are shown)."""
    if dashboard.usage is not None and dashboard.section == "usage":
        return dashboard.usage.metrics.total_requests
    if dashboard.health is not None:
        return int(dashboard.health.failures_over_time["requests"].sum())
    return 0


@pytest.fixture(scope="module")
def queries(tiny):
    return query_strings(tiny)


def test_any_query_string_shows_at_most_the_viewers_own_view(tiny, tiny_db, own_view):
    @examples(60)
    @given(viewer=st.sampled_from(FIXED_TO_OWN_ORG), query=query_strings(tiny))
    def check(viewer, query):
        try:
            usage = compute_usage(tiny_db, viewer, selection_from_query(query, Selection(now=NOW)))
        except UsageError as refused:
            assert one_line(str(refused))
            return
        assert usage.scope.org is not None and usage.scope.org.id == usage.scope.viewer.org_id
        assert within(usage.metrics.total_requests, own_view(viewer))
        assert all(within(int(requests), own_view(viewer)) for requests in usage.top["requests"])

    check()


def test_a_served_page_with_any_query_string_shows_at_most_the_own_view_or_one_line(tiny, own_view):
    @examples(8)
    @given(viewer=st.sampled_from((ACME_ADMIN, *FIXED_TO_OWN_ORG)), query=query_strings(tiny))
    def check(viewer, query):
        dashboard = served_dashboard(tiny, viewer, query)
        try:
            assert one_line(dashboard.error), dashboard.error
            assert one_line(dashboard.zone_message) and one_line(dashboard.refresh_message)
            if viewer != ACME_ADMIN:
                assert within(shown_requests(dashboard), own_view(viewer))
        finally:
            dashboard.close()

    check()


@pytest.mark.parametrize("query", [
    "tz=" + "9" * 20_000,                      # a zone name longer than a file name
    "tz=America", "tz=Europe/",                # directories of the zone database
    "org=" + "9" * 20_000,                     # an id of more digits than int() reads
    "token=" + "9" * 20_000,
    "token=\u0661\u0662",                      # digits, but not ASCII ones
    "start=0001-01-01T00:00%2B01:00&end=2026-11-24",  # before the calendar's first day in UTC
    "start=9999-12-31T23:00-05:00&end=9999-12-31T23:30-05:00",
    "start=1900-01-01&end=2026-11-24",         # a century of daily buckets
    "span=" + "x" * 20_000,
])
def test_odd_values_are_refused_or_ignored_in_one_short_line(tiny_db, own_view, query):
    try:
        usage = compute_usage(tiny_db, URSULA, selection_from_query(query, Selection(now=NOW)))
    except UsageError as refused:
        assert one_line(str(refused)) and len(str(refused)) < 300
        return
    assert within(usage.metrics.total_requests, own_view(URSULA))
    assert all(one_line(note) and len(note) < 300 for note in usage.fallbacks)


def test_no_query_value_reaches_the_text_of_a_statement(tiny, tiny_db):
    @examples(60)
    @given(viewer=st.sampled_from((ACME_ADMIN, *FIXED_TO_OWN_ORG)), query=query_strings(tiny),
           payload=st.sampled_from(SQL_PAYLOADS), key=st.sampled_from(STATE_KEYS))
    def check(viewer, query, payload, key):
        query = f"{query}&{urlencode({key: payload})}"
        mark = len(tiny_db.statements.log)
        try:
            compute_usage(tiny_db, viewer, selection_from_query(query, Selection(now=NOW)))
        except UsageError:
            pass
        assert SENTINEL not in sql_since(tiny_db, mark)

    check()


def test_hostile_values_stay_out_of_sql_on_both_backends(gateway_db):
    """Each payload as each key (the ones choosing what is shown rotated through them, the
    time keys alone: those are refused before any statement) and as the viewer, for the
    usage and the health figures, on SQLite and PostgreSQL."""
    org = build_tiny_org(gateway_db())
    db = open_database(org.url)
    choosing, timing = ("org", "token", "span", "top"), ("start", "end", "tz")
    try:
        for index, payload in enumerate(SQL_PAYLOADS):
            rotated = urlencode({key: SQL_PAYLOADS[(index + k) % len(SQL_PAYLOADS)] for k, key in enumerate(choosing)})
            for viewer, query in ((URSULA, rotated), (URSULA, urlencode(dict.fromkeys(timing, payload))), (payload, "")):
                for compute in (compute_usage, compute_health):
                    mark = len(db.statements.log)
                    try:
                        compute(db, viewer, selection_from_query(query, Selection(now=NOW)))
                    except UsageError as refused:
                        assert one_line(str(refused))
                    assert SENTINEL not in sql_since(db, mark)
        assert db.statements.log
    finally:
        db.close()


def test_the_longest_range_is_computed_and_a_longer_one_refused_in_one_line(gateway_db):
    """A year of daily buckets fits one statement on both backends; a day more is refused
    before any (it once ran for a minute and failed with the database's error)."""
    org = build_tiny_org(gateway_db())
    db = open_database(org.url)
    try:
        end = NOW - timedelta(minutes=30)
        longest = compute_usage(db, URSULA, Selection(now=NOW, start=end - LONGEST_RANGE, end=end))
        assert longest.metrics.total_requests == URSULA_OWN
        mark = len(db.statements.log)
        with pytest.raises(UsageError, match="longer than 366 days") as refused:
            compute_usage(db, URSULA, Selection(now=NOW, start=end - LONGEST_RANGE - timedelta(days=1), end=end))
        assert one_line(str(refused.value))
        assert len(db.statements.log) - mark <= 2  # the viewer and the catalogue, not the usage
    finally:
        db.close()


# -- forged widget messages ---------------------------------------------------------------

def update(widget, state: dict) -> None:
    """A widget message as the kernel receives it: set synced attributes."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})


def custom(widget, content: object) -> None:
    """A custom widget message (a click, the address bar's popstate)."""
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def forged_messages(tiny: Tiny):
    """(target, kind, payload) for a dashboard: any index of any choice, any text of the
    zone the browser reports, any range, clicks on hidden or disabled buttons, any query
    as a history entry."""
    anything = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=20),
                         st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
    index = st.one_of(st.integers(-3, 120), anything)
    picked = st.one_of(
        st.tuples(st.sampled_from(["org_dropdown", "span_toggle", "top_toggle", "zone_dropdown", "refresh_dropdown",
                                   "section_switch", "time_switch", "model_switch"]),
                  st.just("update"), index.map(lambda i: {"index": i})),
        st.tuples(st.sampled_from(["range_start", "range_end"]), st.just("update"),
                  st.one_of(anything, st.fixed_dictionaries({"year": st.integers(-5, 10_000), "month": st.integers(-1, 13),
                                                             "date": st.integers(-1, 40), "hours": st.integers(-1, 30),
                                                             "minutes": st.integers(0, 70), "seconds": st.integers(0, 70),
                                                             "milliseconds": st.integers(0, 1000)})).map(lambda v: {"value": v})),
        st.tuples(st.just("browser_zone"), st.just("update"), st.one_of(anything, query_values(tiny)).map(lambda z: {"zone": z})),
        st.tuples(st.sampled_from(["all_orgs_button", "all_tokens_button", "range_apply", "retry_button"]),
                  st.just("custom"), st.just({"event": "click"})),
        st.tuples(st.just("address"), st.just("custom"),
                  st.one_of(anything, query_strings(tiny).map(lambda q: {"popstate": q}))),
        st.tuples(st.just("table_targets"), st.just("update"), index.map(lambda i: {"index": i})),
    )
    return st.lists(picked, min_size=1, max_size=4)


def target(dashboard: Dashboard, name: str):
    if name == "table_targets":
        return dashboard.table.targets
    return getattr(dashboard, name)


def test_forged_widget_messages_show_at_most_the_own_view_and_never_raise(tiny, own_view):
    @examples(10)
    @given(viewer=st.sampled_from(FIXED_TO_OWN_ORG), messages=forged_messages(tiny))
    def check(viewer, messages):
        dashboard = served_dashboard(tiny, viewer, "")
        try:
            for name, kind, payload in messages:
                widget = target(dashboard, name)
                if widget is None:
                    continue
                try:
                    (update if kind == "update" else custom)(widget, payload)
                except Exception as refused:  # noqa: BLE001 - only the widget's own check may refuse
                    assert type(refused).__name__ == "TraitError", repr(refused)
                assert not dashboard._busy
                assert one_line(dashboard.error), dashboard.error
                assert within(shown_requests(dashboard), own_view(viewer))
        finally:
            dashboard.close()

    check()


# -- identity headers ---------------------------------------------------------------------

HEADER = "X-Forwarded-Email"


def hook_request(values: list[tuple[str, str]]):
    """The request the hook sees for these header lines, as Tornado parses them (values
    stripped), or None when Tornado itself refuses them (a 400 before any hook)."""
    try:
        headers = HTTPHeaders.parse("".join(f"{name}: {value}\r\n" for name, value in values))
    except HTTPInputError:
        return None
    return SimpleNamespace(request=SimpleNamespace(headers=headers, uri="/", remote_ip="127.0.0.1"))


def header_values(tiny: Tiny) -> st.SearchStrategy[str]:
    """Users' emails and usernames as sent, in other letters, padded, joined, or anything."""
    names = sorted({value for _, username, email, _ in tiny.users for value in (username, email) if value})
    known = st.sampled_from(names)
    return st.one_of(
        known,
        known.map(str.upper), known.map(str.swapcase), known.map(str.capitalize),
        st.tuples(st.sampled_from([" ", "\t", "  ", "\u00a0", "\r", ""]), known, st.sampled_from([" ", "\t", "", "\u00a0"]))
        .map("".join),
        st.tuples(known, known).map(", ".join), known.map(lambda v: f"Someone <{v}>"), known.map(lambda v: v[:-1]),
        st.just(""), st.text(max_size=20),
    )


def header_lists(tiny: Tiny):
    names = st.sampled_from([HEADER, HEADER.lower(), HEADER.upper()])
    return st.lists(st.tuples(names, header_values(tiny)), max_size=3)


def viewer_of_header(monkeypatch, values: list[tuple[str, str]]) -> str | None:
    """What the kernel trusts after the hook saw `values`: None for a 403."""
    monkeypatch.setenv("AQUEDUCT_IDENTITY", "header")
    monkeypatch.setattr(identity, "_trusted_viewer", None)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('dashboard')")])
    request = hook_request(values)
    if request is None:
        return None
    try:
        notebook = prelaunch_hook(request, notebook, ".")
    except HTTPError as refused:
        assert refused.status_code == 403
        return None
    exec(notebook.cells[0].source, {})
    return identity.resolve_viewer(Settings.from_env({"AQUEDUCT_IDENTITY": "header"}), {})


def rightful_users(tiny: Tiny, who: str) -> set[int]:
    """SPEC §2: the active user with that exact email, else with that exact username."""
    by_email = {i for i, _, email, active in tiny.users if email == who and active}
    return by_email or {i for i, username, _, active in tiny.users if username == who and active}


def test_identity_headers_give_a_403_or_their_own_viewer_never_another(tiny, tiny_db, monkeypatch):
    @examples(60)
    @given(values=header_lists(tiny))
    def check(values):
        trusted = viewer_of_header(monkeypatch, values)
        if len(values) != 1:
            assert trusted is None  # missing or repeated (in any letters): refused
            return
        if trusted is None:
            return
        assert trusted == values[0][1].strip()
        try:
            viewer = compute_usage(tiny_db, trusted, Selection(now=NOW)).scope.viewer
        except UsageError as refused:  # unknown, inactive, ambiguous or without a role
            assert one_line(str(refused))
            assert len(rightful_users(tiny, trusted)) != 1 or "role" in str(refused) or "profile" in str(refused)
            return
        assert rightful_users(tiny, trusted) == {viewer.id}

    check()


@pytest.mark.parametrize("sent, shown", [
    (" ursula@example.org ", URSULA),
    ("\tursula@example.org", URSULA),
    ("dora@example.org", "dora@example.org"),      # the active one of two sharing the email
    ("Ursula@Example.org", "casey@example.org"),   # a username, not ursula's email in other letters
])
def test_a_padded_or_shared_header_value_shows_its_own_viewer(tiny, tiny_db, monkeypatch, sent, shown):
    trusted = viewer_of_header(monkeypatch, [(HEADER, sent)])
    assert compute_usage(tiny_db, trusted, Selection(now=NOW)).scope.viewer.label == shown


@pytest.mark.parametrize("sent, message", [
    ("URSULA@EXAMPLE.ORG", "unknown viewer"),
    ("ursula@example.org.", "unknown viewer"),
    ("ivan@example.org", "inactive"),
])
def test_another_case_or_an_inactive_user_is_refused_in_one_line(tiny, tiny_db, monkeypatch, sent, message):
    trusted = viewer_of_header(monkeypatch, [(HEADER, sent)])
    with pytest.raises(UsageError, match=message) as refused:
        compute_usage(tiny_db, trusted, Selection(now=NOW))
    assert one_line(str(refused.value))


@pytest.mark.parametrize("values", [
    [],
    [(HEADER, "")],
    [(HEADER, "   ")],
    [(HEADER, URSULA), (HEADER, URSULA)],
    [(HEADER, URSULA), (HEADER.lower(), ORG_ADMIN)],
    [(HEADER, f"{URSULA},{ORG_ADMIN}")],
    [(HEADER, "ursula @example.org")],
])
def test_a_missing_empty_repeated_or_split_header_is_a_403(monkeypatch, values):
    assert viewer_of_header(monkeypatch, values) is None


# -- names from the data ------------------------------------------------------------------

#: Names a gateway may hold: markup, script, quotes, line breaks, bidi marks, 10 kB,
#: spreadsheet formulas. The script ones set `window.__pwned` if they ever run.
NAMES = {
    "script": "<script>window.__pwned=1</script>",
    "img": '<img src=x onerror="window.__pwned=1;alert(1)">',
    "quotes": "O'Brien \"quoted\" `tick` &amp; </div>",
    "lines": "first line\nTotal Requests 999\r\nthird",
    "bidi": "\u202egnp.exe\u200f \u2067isolated\u2069",
    "formula": '=HYPERLINK("http://evil.example","x")',
    "plus": "+1+1",
    "minus": "-2+3",
    "at": "@SUM(A1:A9)",
    "tab": "\t=1+1",
    "escape": "\x1b[31mred\x1b[0m\x07",
    "long": "L" * 10_240,
}


@dataclass
class Hostile:
    url: str
    router_config: object
    admin: str
    #: Each place -> the names it holds.
    orgs: tuple[str, ...]
    tokens: tuple[str, ...]
    service_accounts: tuple[str, ...]
    emails: tuple[str, ...]
    user_ids: tuple[str, ...]
    models: tuple[str, ...]
    token_id: int
    org_id: int


def build_hostile_gateway(builder: GatewayBuilder, directory) -> Hostile:
    """Every place a name is shown, filled with `NAMES`: orgs named by them (the first is
    the admin's, with a team, service accounts, and owners whose emails are names, their
    tokens named by names and sending names as user_ids; each other org one token), models
    named by the router configuration; requests an hour ago, per-minute limits, so every
    table and chart has rows."""
    org_names = (NAMES["script"], NAMES["formula"], NAMES["long"], NAMES["bidi"])
    orgs = [builder.org(name, limits={"requests_per_minute": 5}) for name in org_names]
    team = builder.team(orgs[0], NAMES["img"])
    admin = builder.user("admin", "admin@example.org", role="admin", org=orgs[0])
    emails = (NAMES["img"] + "@x.org", NAMES["formula"], NAMES["lines"], NAMES["long"] + "@x.org")
    owners = [builder.user(f"owner{i}", email, role="user", org=orgs[0]) for i, email in enumerate(emails)]
    sa_names = (NAMES["quotes"], NAMES["minus"], NAMES["escape"])
    accounts = [builder.service_account(team, name) for name in sa_names]
    token_names = (NAMES["img"], NAMES["lines"], NAMES["bidi"], NAMES["long"], NAMES["formula"], NAMES["at"])
    tokens = [builder.token(owners[i % len(owners)], name) for i, name in enumerate(token_names)]
    tokens += [builder.token(admin, f"sa-token-{i}", service_account=account) for i, account in enumerate(accounts)]
    tokens += [builder.token(builder.user(f"member{i}", role="user", org=org), f"plain-{i}")
               for i, org in enumerate(orgs[1:])]
    models = (NAMES["script"], NAMES["img"], NAMES["quotes"], NAMES["lines"], NAMES["plus"], NAMES["bidi"],
              NAMES["tab"], NAMES["long"])
    user_ids = tuple(NAMES.values())
    at = NOW - timedelta(hours=1)
    for i, token in enumerate(tokens):
        for j, model in enumerate(models):
            builder.request(token, at + timedelta(seconds=i), model=model, user_id=user_ids[(i + j) % len(user_ids)],
                            status=(200, 429, 500)[j % 3], count=1 + (i + j) % 3)
    for user_id in user_ids:  # the first token's table: every user_id
        builder.request(tokens[0], at, model=models[0], user_id=user_id)
    router = directory / "router.yaml"
    router.write_text(yaml.safe_dump({"model_list": [{"model_name": m} for m in models]}, allow_unicode=True),
                      encoding="utf-8")
    return Hostile(url=builder.url, router_config=router, admin="admin@example.org", orgs=org_names,
                   tokens=token_names, service_accounts=sa_names, emails=emails, user_ids=user_ids, models=models,
                   token_id=tokens[0], org_id=orgs[0])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Hostile:
    directory = tmp_path_factory.mktemp("hostile-names")
    builder = GatewayBuilder(sqlite_url(directory / "gateway.sqlite3"))
    made = build_hostile_gateway(builder, directory)
    builder.close()
    return made


def hostile_settings(hostile: Hostile) -> Settings:
    return Settings(db_url=hostile.url, router_config=hostile.router_config, viewer=hostile.admin,
                    view=Selection(now=NOW))


@pytest.fixture(scope="module")
def hostile_views(hostile):
    """The admin's dashboard at each level: All (org names), their org (tokens, emails,
    service accounts, models), a token (user_ids), and the Health section."""
    views = {}
    for name, selection, section in (("all", Selection(org="all"), "usage"), ("org", Selection(), "usage"),
                                     ("token", Selection(token=hostile.token_id), "usage"),
                                     ("health", Selection(), "health")):
        dashboard = Dashboard(hostile_settings(hostile), replace(selection, now=NOW), section=section)
        dashboard.refresh()
        assert dashboard.error is None, dashboard.error
        views[name] = dashboard
    yield views
    for dashboard in views.values():
        dashboard.close()


class Markup(HTMLParser):
    """The elements, attributes and text of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.texts: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.texts).append(data)


def parsed(fragment: str) -> Markup:
    markup = Markup()
    markup.feed(fragment)
    markup.close()
    return markup


def page_parts(dashboard: Dashboard) -> tuple[list[Markup], list[str]]:
    """Everything the page's widgets send the browser: the HTML widgets' values (parsed)
    and every other text (labels, options, tooltips, chart labels and domains)."""
    state = dependency_state([dashboard.widget], drop_defaults=False)
    fragments, texts = [], []

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from strings(item)
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)

    for model in state.values():
        for key, value in model["state"].items():
            if model["model_name"] in ("HTMLModel", "HTMLMathModel") and key == "value":
                fragments.append(parsed(value))
            else:
                texts += strings(value)
    return fragments, texts


def shown_texts(dashboard: Dashboard) -> str:
    fragments, texts = page_parts(dashboard)
    return "\u0000".join([*(t for f in fragments for t in f.texts), *(v for f in fragments for _, v in f.attributes),
                          *texts])


@pytest.mark.parametrize("view", ["all", "org", "token", "health"])
def test_names_in_the_page_are_text_never_markup(hostile_views, view):
    fragments, _ = page_parts(hostile_views[view])
    tags = {tag for fragment in fragments for tag in fragment.tags}
    attributes = {name for fragment in fragments for name, _ in fragment.attributes}
    assert not tags & {"script", "img", "iframe", "object", "embed", "svg", "a"}, tags
    assert not {name for name in attributes if name.startswith("on")}
    assert not any(fragment.scripts for fragment in fragments)


@pytest.mark.parametrize("view, places", [
    ("all", ("orgs",)),
    ("org", ("tokens", "service_accounts", "emails", "models")),
    ("token", ("user_ids",)),
    ("health", ("models",)),
])
def test_names_in_the_page_are_shown_as_they_are(hostile, hostile_views, view, places):
    shown = shown_texts(hostile_views[view])
    for place in places:
        for name in getattr(hostile, place):
            assert name in shown, f"{place}: {name[:40]!r} not shown literally"


def test_the_table_shows_the_names_and_titles_them_whole(hostile, hostile_views):
    table = hostile_views["org"].table
    names = {row["name"] for row in table.displayed()}
    assert set(hostile.tokens) <= names
    assert set(hostile.service_accounts) <= names
    assert set(hostile.emails) <= {row["owner_email"] for row in table.displayed()}
    body = parsed(table.body.value)
    for name in hostile.tokens:
        assert name in body.texts and name in {value for key, value in body.attributes if key == "title"}


def test_chart_labels_and_tooltips_show_names_as_text(hostile, hostile_views):
    chart = hostile_views["org"].models_chart
    assert set(hostile.models) <= set(chart.model_scale.domain)
    for index in range(len(chart.model_scale.domain)):
        tip = parsed(chart.tip.html_for(index))
        assert not {"script", "img"} & set(tip.tags)
        assert any(model in tip.texts for model in hostile.models)


def hostile_report(hostile_views, view: str = "org", health: bool = True) -> Report:
    dashboard = hostile_views[view]
    figures = hostile_views["health"].health if health and view == "org" else None
    return Report.of(dashboard.usage, dashboard.widget, figures)


#: What a terminal would act on instead of showing: controls (a line break included)
#: and the bidi marks that reorder what follows them.
ACTED_ON = {chr(c) for c in (*range(0x20), *range(0x7f, 0xa0))} | set("\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e"
                                                                      "\u2066\u2067\u2068\u2069")


@pytest.mark.parametrize("view", ["all", "org", "token"])
def test_the_text_report_writes_control_and_bidi_characters_visibly(hostile_views, view):
    report = text(hostile_report(hostile_views, view))
    lines = report.split("\n")
    assert not {ch for line in lines for ch in line} & ACTED_ON
    assert not any(line.startswith("Total Requests") for line in lines)


def visibly(name: str) -> str:
    """`name` as a terminal report writes it: what a terminal acts on, as an escape."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if ch in ACTED_ON else ch for ch in name)


def test_the_text_report_names_every_name(hostile, hostile_views):
    report = text(hostile_report(hostile_views, "org"))
    for name in (*hostile.tokens[:1], *hostile.service_accounts, *hostile.emails, *hostile.models, hostile.orgs[0]):
        assert visibly(name) in report, f"{name[:40]!r}"


def csv_rows(files: dict[str, bytes]) -> list[list[str]]:
    return [row for data in files.values() for row in csv.reader(io.StringIO(data.decode("utf-8"), newline=""))]


def test_csv_cells_never_start_a_formula(hostile_views):
    for view in ("all", "org", "token"):
        for row in csv_rows(render_csv(hostile_report(hostile_views, view), "x")):
            for cell in row:
                assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell[:40]
                assert not cell.startswith("-") or cell.lstrip("-").replace(".", "", 1).isdigit(), cell[:40]


def test_csv_keeps_every_name_with_a_formula_quoted(hostile, hostile_views):
    cells = {cell for view in ("all", "org", "token")
             for row in csv_rows(render_csv(hostile_report(hostile_views, view), "x")) for cell in row}
    for name in {*hostile.orgs, *hostile.tokens, *hostile.service_accounts, *hostile.emails, *hostile.user_ids,
                 *hostile.models}:
        quoted = "'" + name if name.startswith(("=", "+", "-", "@", "\t", "\r")) else name
        assert quoted in cells, f"{name[:40]!r} is not a cell"


def test_json_keeps_every_name_exactly(hostile, hostile_views):
    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    found = set()
    for view in ("all", "org", "token"):
        data = json.loads(render_json(hostile_report(hostile_views, view), "x")["x.json"])
        found |= set(strings(data))
    for place in ("orgs", "tokens", "service_accounts", "emails", "user_ids", "models"):
        for name in getattr(hostile, place):
            assert name in found, f"{place}: {name[:40]!r}"


def test_the_offline_snapshot_holds_names_as_text_and_data_never_as_script(hostile, hostile_views):
    page = parsed(snapshot_html(hostile_report(hostile_views, "org")))
    assert "img" not in page.tags
    assert not {name for name, _ in page.attributes if name.startswith("on")}
    ours = [script for script in page.scripts if "__pwned" in script]
    for script in ours:  # the names inside the embedded report and widget state: JSON, not code
        json.loads(script)
    shown = "".join(page.texts)
    for name in (*hostile.tokens, *hostile.service_accounts, *hostile.models, hostile.orgs[0]):
        assert name in shown


def test_a_file_name_from_a_long_org_name_fits_the_file_system(hostile_views):
    usage = hostile_views["org"].usage
    long_named = replace(usage, scope=replace(usage.scope, org=replace(usage.scope.org, name=NAMES["long"])))
    stem = file_stem(long_named)
    assert len(f"{stem}.failures_by_model.csv".encode()) <= 255

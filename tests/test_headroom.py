"""Rate-limit headroom (issue 15, item 5): each token's busiest minute of the window
against its effective per-minute limits, on tiny hand-built orgs, on SQLite and
PostgreSQL.

Rules under test (the gateway's, version 0.1.18):
- per limit field separately, a service-account token takes its team's value, else the
  team's org's; any other token its owner's profile's value, else the profile's org's;
  NULL at both: no limit;
- each measure (weighted requests, input tokens, output tokens) has its own busiest
  calendar minute;
- a request counts 1/multiplier of its model (router config's
  `model_info.request_limit_multiplier`, default 1), a request without a model 0;
- org admins and global admins see their reach's tokens; standard users see nothing;
- a gateway without limit columns gives no headroom, and nothing else changes.

The window is the last hour before NOW (12:00 UTC): [11:00, ...). Unless a test says
otherwise a request has model gpt-4o, 10 input and 5 output tokens.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tests.support.gateway import NOW
from usage_lib import Selection, compute_usage, open_database
from usage_lib.core import access, queries
from usage_lib.core.headroom import COLUMNS, NEAR_LIMIT, near_limit, read_headroom
from usage_lib.core.spans import window
from usage_lib.errors import UsageError
from usage_lib.gateway.routerconfig import parse_request_multipliers

CONFIG = ("gpt-4o", "claude")
#: Two minutes inside the window.
AT_1130 = datetime(2026, 11, 24, 11, 30, tzinfo=timezone.utc)
AT_1140 = datetime(2026, 11, 24, 11, 40, tzinfo=timezone.utc)
REQUESTS = "requests_per_minute"
INPUT = "input_tokens_per_minute"
OUTPUT = "output_tokens_per_minute"


def scope_for(db, viewer: str, org: object = None, token: object = None) -> access.Scope:
    with db.connect() as conn:
        person = access.resolve_viewer(conn.execute(queries.viewer_statement(viewer)).mappings(), viewer)
        catalogue = access.build_catalogue(conn.execute(queries.catalogue_statement(False)).mappings())
    return access.resolve_scope(person, catalogue, org=org, token=token)


def read(g, viewer: str = "root", models=CONFIG, multipliers=None, org=None,
         token=None) -> tuple[pd.DataFrame | None, int]:
    """read_headroom for `viewer` over the hour before NOW, and the statements it sent."""
    db = open_database(g.url)
    try:
        scope = scope_for(db, viewer, org, token)
        before = db.statements.count
        with db.connect() as conn:
            frame = read_headroom(conn, db, scope, window("1h", NOW, ZoneInfo("UTC")), models, multipliers or {})
        return frame, db.statements.count - before
    finally:
        db.close()


def headroom(g, **options) -> pd.DataFrame | None:
    return read(g, **options)[0]


def row(frame: pd.DataFrame, token_id: int) -> dict:
    (found,) = frame[frame["token_id"] == token_id].to_dict("records")
    return found


def limits(found: dict) -> tuple:
    return found["requests_limit"], found["input_limit"], found["output_limit"]


@pytest.fixture
def acme(gateway_db):
    """Acme (no limits) with root, a global admin; (builder, org id, root's id)."""
    g = gateway_db()
    org = g.org("Acme")
    return g, org, g.user("root", role="admin", org=org)


# --- effective limits ------------------------------------------------------------------


def test_a_user_token_takes_its_profiles_limit_else_its_orgs_field_by_field(gateway_db):
    g = gateway_db()
    org = g.org("Acme", limits={REQUESTS: 100, INPUT: 1000, OUTPUT: 500})
    g.user("root", role="admin", org=org)
    ada = g.user("ada", org=org, limits={REQUESTS: 10})
    key = g.token(ada, "ada-key")
    g.request(key, AT_1130)
    # requests: the profile's 10; input and output: the profile has none, the org's.
    assert limits(row(headroom(g), key)) == (10, 1000, 500)


def test_a_service_account_token_takes_its_teams_limit_else_the_teams_orgs_field_by_field(gateway_db):
    g = gateway_db()
    acme = g.org("Acme", limits={REQUESTS: 100, INPUT: 1000, OUTPUT: 500})
    beta = g.org("Beta", limits={REQUESTS: 7, INPUT: 7, OUTPUT: 7})
    g.user("root", role="admin", org=acme)
    ml = g.team(acme, "ML", limits={INPUT: 2000})
    # The token's creator is from Beta and has limits of their own: neither counts.
    bert = g.user("bert", org=beta, limits={REQUESTS: 1, INPUT: 1, OUTPUT: 1})
    key = g.token(bert, "ml-key", service_account=g.service_account(ml, "ml-bot"))
    g.request(key, AT_1130)
    # requests and output: the team has none, Acme's; input: the team's 2000.
    assert limits(row(headroom(g), key)) == (100, 2000, 500)


def test_a_token_without_a_limit_anywhere_has_none_and_no_share(acme):
    g, org, root = acme
    key = g.token(root, "main")
    g.request(key, AT_1130)
    found = row(headroom(g), key)
    assert [pd.isna(limit) for limit in limits(found)] == [True, True, True]
    assert math.isnan(found["peak_share"])


def test_limits_are_nullable_integers(acme):
    g, org, root = acme
    ada = g.user("ada", org=org, limits={REQUESTS: 10})
    g.request(g.token(ada, "ada-key"), AT_1130)
    frame = headroom(g)
    assert [str(frame[column].dtype) for column in ("requests_limit", "input_limit", "output_limit")] == ["Int64"] * 3


# --- the busiest minute ----------------------------------------------------------------


def test_each_measure_takes_its_own_busiest_minute(acme):
    g, org, root = acme
    key = g.token(root, "main")
    # 11:30: 3 requests, 30 input, 15 output; 11:40: 1 request, 100 input, 2 output.
    g.request(key, AT_1130, count=3)
    g.request(key, AT_1140, input_tokens=100, output_tokens=2)
    found = row(headroom(g), key)
    assert (found["busiest_requests"], found["busiest_input_tokens"], found["busiest_output_tokens"]) == (3.0, 100, 15)


def test_a_minute_runs_from_its_first_to_its_last_microsecond(acme):
    g, org, root = acme
    key = g.token(root, "main")
    # 11:30:00 (short text form on SQLite) and 11:30:59.999999 are one minute: 3;
    # 11:31:00 opens the next: 2. Busiest: 3, not 5.
    g.request(key, AT_1130, count=2)
    g.request(key, AT_1130 + timedelta(seconds=59, microseconds=999999))
    g.request(key, AT_1130 + timedelta(minutes=1), count=2)
    assert row(headroom(g), key)["busiest_requests"] == 3.0


def test_requests_before_the_window_do_not_count(acme):
    g, org, root = acme
    key = g.token(root, "main")
    g.request(key, AT_1130)
    g.request(key, NOW - timedelta(hours=1, seconds=1), count=50)
    assert row(headroom(g), key)["busiest_requests"] == 1.0


def test_only_tokens_with_requests_in_the_window_have_a_row(acme):
    g, org, root = acme
    busy, idle = g.token(root, "busy"), g.token(root, "idle")
    g.request(busy, AT_1130)
    g.request(idle, NOW - timedelta(hours=2))
    assert headroom(g)["token_id"].tolist() == [busy]


# --- weighted requests -----------------------------------------------------------------


def test_a_request_counts_one_over_its_models_multiplier(acme):
    g, org, root = acme
    key = g.token(root, "main")
    # 2 gpt-4o at 1 and 4 claude at 1/4: 2 + 1 = 3.
    g.request(key, AT_1130, count=2)
    g.request(key, AT_1130, model="claude", count=4)
    assert row(headroom(g, multipliers={"claude": 4.0}), key)["busiest_requests"] == pytest.approx(3.0)


def test_a_request_without_a_model_counts_towards_tokens_but_not_requests(acme):
    g, org, root = acme
    key = g.token(root, "main")
    # No router config: every request counts, but an empty or NULL model weighs 0.
    g.request(key, AT_1130, count=2)
    g.request(key, AT_1130, model="", count=3)
    g.request(key, AT_1130, model=None)
    found = row(headroom(g, models=None), key)
    assert (found["busiest_requests"], found["busiest_input_tokens"]) == (2.0, 60)


# --- shares and the near-limit list ----------------------------------------------------


def test_peak_share_is_the_largest_share_over_the_tokens_limits(acme):
    g, org, root = acme
    ada = g.user("ada", org=org, limits={REQUESTS: 10, INPUT: 1000, OUTPUT: 20})
    key = g.token(ada, "ada-key")
    # 3/10 = 0.3, 30/1000 = 0.03, 15/20 = 0.75.
    g.request(key, AT_1130, count=3)
    assert row(headroom(g), key)["peak_share"] == pytest.approx(0.75)


def test_near_limit_lists_the_tokens_at_80_percent_or_more_largest_first(acme):
    g, org, root = acme
    ten = g.user("ten", org=org, limits={REQUESTS: 10})
    hundred = g.user("hundred", org=org, limits={REQUESTS: 100})
    at_80, under, full, free = (g.token(ten, "at-80"), g.token(hundred, "under"), g.token(ten, "full"),
                                g.token(root, "free"))
    g.request(at_80, AT_1130, count=8)  # 8/10 = 0.8
    g.request(under, AT_1130, count=79)  # 79/100 = 0.79
    g.request(full, AT_1130, count=10)  # 10/10 = 1.0
    g.request(free, AT_1130, count=500)  # no limit
    near = near_limit(headroom(g))
    assert NEAR_LIMIT == 0.8
    assert near["token_id"].tolist() == [full, at_80]
    assert near["peak_share"].tolist() == [1.0, 0.8]


def test_a_limit_of_zero_is_full_once_used(acme):
    g, org, root = acme
    ada = g.user("ada", org=org, limits={REQUESTS: 0})
    key = g.token(ada, "ada-key")
    g.request(key, AT_1130)
    frame = headroom(g)
    assert row(frame, key)["peak_share"] == math.inf
    assert near_limit(frame)["token_id"].tolist() == [key]


def test_no_requests_in_the_window_give_an_empty_frame_with_every_column(acme):
    g, org, root = acme
    g.request(g.token(root, "main"), NOW - timedelta(hours=2))
    frame = headroom(g)
    assert list(frame.columns) == list(COLUMNS)
    assert (len(frame), len(near_limit(frame))) == (0, 0)


# --- who sees it -----------------------------------------------------------------------


def test_a_standard_user_gets_none_without_a_statement(acme):
    g, org, root = acme
    ursula = g.user("ursula", org=org, limits={REQUESTS: 10})
    g.request(g.token(ursula, "urs"), AT_1130)
    assert read(g, viewer="ursula") == (None, 0)


def test_an_org_admin_sees_only_their_orgs_tokens(gateway_db):
    g = gateway_db()
    acme, beta = g.org("Acme"), g.org("Beta")
    olga = g.user("olga", role="org-admin", org=acme)
    bert = g.user("bert", org=beta)
    mine, theirs = g.token(olga, "mine"), g.token(bert, "theirs")
    g.request(mine, AT_1130)
    g.request(theirs, AT_1130)
    assert headroom(g, viewer="olga", org="all")["token_id"].tolist() == [mine]


def test_a_global_admin_with_all_sees_every_token(gateway_db):
    g = gateway_db()
    acme, beta = g.org("Acme"), g.org("Beta")
    root = g.user("root", role="admin", org=acme)
    bert = g.user("bert", org=beta)
    mine, theirs = g.token(root, "mine"), g.token(bert, "theirs")
    g.request(mine, AT_1130)
    g.request(theirs, AT_1130)
    assert headroom(g, org="all")["token_id"].tolist() == [mine, theirs]


def test_a_selected_token_has_the_only_row(acme):
    g, org, root = acme
    one, other = g.token(root, "one"), g.token(root, "other")
    g.request(one, AT_1130)
    g.request(other, AT_1130)
    assert headroom(g, token=other)["token_id"].tolist() == [other]


# --- gateways and statements -----------------------------------------------------------


def test_a_gateway_without_limit_columns_gives_none_and_usage_still_reads(gateway_db):
    g = gateway_db(limit_columns=False)
    org = g.org("Acme")
    root = g.user("root", role="admin", org=org)
    g.request(g.token(root, "main"), AT_1130, count=2)
    assert read(g) == (None, 0)
    db = open_database(g.url)
    try:
        usage = compute_usage(db, "root", Selection(now=NOW, span="1h"), models=CONFIG)
    finally:
        db.close()
    assert usage.figure("total_requests") == 2


def test_headroom_is_one_statement(acme):
    g, org, root = acme
    ada = g.user("ada", org=org, limits={REQUESTS: 10})
    g.request(g.token(root, "main"), AT_1130)
    g.request(g.token(ada, "ada-key"), AT_1140, model="claude")
    frame, statements = read(g, multipliers={"claude": 2.0})
    assert (len(frame), statements) == (2, 1)


# --- router config ---------------------------------------------------------------------


def test_the_router_config_gives_the_multipliers_of_the_models_that_set_one():
    text = (
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    model_info: {request_limit_multiplier: 2}\n"
        "  - model_name: claude\n"
        "    model_info: {mode: chat}\n"
        "  - model_name: embed\n"
        "    model_info: {request_limit_multiplier: 0.5}\n"
    )
    assert parse_request_multipliers(text) == {"gpt-4o": 2.0, "embed": 0.5}


def test_a_model_balanced_over_deployments_takes_its_first_entrys_multiplier():
    text = (
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    model_info: {request_limit_multiplier: 3}\n"
        "  - model_name: gpt-4o\n"
        "    model_info: {request_limit_multiplier: 5}\n"
    )
    assert parse_request_multipliers(text) == {"gpt-4o": 3.0}


@pytest.mark.parametrize("value", ["0", "-1", "fast", "true", ".inf"])
def test_a_multiplier_that_is_not_a_positive_number_is_a_one_line_error_naming_the_model(value):
    text = f"model_list:\n  - model_name: gpt-4o\n    model_info: {{request_limit_multiplier: {value}}}\n"
    with pytest.raises(UsageError) as caught:
        parse_request_multipliers(text, source="router.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("router.yaml: model_list entry 1 (gpt-4o): request_limit_multiplier")

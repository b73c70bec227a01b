"""SPEC §3: every figure, on small hand-built databases, on SQLite and PostgreSQL.

Each test builds only the rows it talks about; expected numbers are worked out here.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from tests.support.gateway import NOW
from usage_lib import Selection, compute_usage, open_database
from usage_lib.core.usage import PREVIOUS_PARTIAL_NOTICE
from usage_lib.errors import UsageError

CONFIG = ("gpt-4o", "claude", "embed-small", "never-used")
US = timedelta(microseconds=1)


@pytest.fixture
def one_token(gateway_db):
    """An org with one global admin who owns one token; returns (builder, token id)."""
    g = gateway_db()
    acme = g.org("Acme")
    admin = g.user("root", role="admin", org=acme)
    return g, g.token(admin, "main")


def usage_of(g, models=CONFIG, **selection):
    return refresh(g, models, **selection)[0]


def refresh(g, models=CONFIG, compare=True, **selection):
    """(usage, number of SQL statements sent) for the global admin root."""
    db = open_database(g.url)
    try:
        db.statements.count = 0
        usage = compute_usage(db, "root", Selection(now=selection.pop("now", NOW), **selection), models=models,
                              compare=compare)
        return usage, db.statements.count
    finally:
        db.close()


# --- the window ----------------------------------------------------------------------


def test_row_exactly_at_window_start_counts_and_a_microsecond_before_does_not(one_token):
    g, token = one_token
    start = NOW - timedelta(days=1)
    g.request(token, start)                       # short text form on SQLite
    g.request(token, start, long_form=True)       # "...:00.000000"
    g.request(token, start - US, count=2)         # "...:59.999999"
    assert usage_of(g).metrics.total_requests == 2


def test_window_start_with_microseconds_compares_right_for_both_text_forms(one_token):
    g, token = one_token
    now = NOW.replace(microsecond=250000)
    start = now - timedelta(hours=1)
    g.request(token, start.replace(microsecond=0), count=1)      # short form, before start
    g.request(token, start - US, count=2)
    g.request(token, start, count=4)
    g.request(token, start.replace(microsecond=0) + timedelta(seconds=1), count=8)  # short, after
    assert usage_of(g, now=now, span="1h").metrics.total_requests == 4 + 8


def test_rows_after_now_count_in_totals_but_not_past_the_last_bucket(one_token):
    g, token = one_token
    g.request(token, NOW + timedelta(minutes=10), count=1)   # same hour bucket as now
    g.request(token, NOW + timedelta(hours=2), count=2)      # no bucket for it
    usage = usage_of(g)
    assert usage.metrics.total_requests == 3
    assert usage.timeseries["requests"].sum() == 1
    assert usage.timeseries["requests"].iloc[-1] == 1
    assert sum(usage.models["requests"]) == 3


def test_empty_window_gives_zeros_everywhere(one_token):
    g, token = one_token
    g.request(token, NOW - timedelta(days=3))
    usage = usage_of(g)
    assert usage.metrics.as_dict() == {
        "total_requests": 0, "failed_requests": 0,
        "avg_response_ms_completion": 0.0, "avg_response_ms_embedding": 0.0,
        "input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
    }
    assert len(usage.timeseries) == 25 and usage.timeseries["requests"].sum() == 0
    assert list(usage.models["model"]) == list(CONFIG)
    assert usage.top.empty


@pytest.mark.parametrize("span, buckets", [("1h", 61), ("1d", 25), ("1w", 8), ("1m", 31)])
def test_bucket_counts_per_span_in_utc(one_token, span, buckets):
    g, _ = one_token
    usage = usage_of(g, span=span, now=NOW + timedelta(minutes=7, seconds=3))
    assert len(usage.timeseries) == buckets


def test_first_bucket_holds_only_rows_from_window_start(one_token):
    g, token = one_token
    now = NOW + timedelta(minutes=30)         # window starts at 12:30 yesterday
    start = now - timedelta(days=1)
    g.request(token, start - timedelta(minutes=10), count=1)   # in the 12:00 hour, before start
    g.request(token, start + timedelta(minutes=10), count=2)
    g.request(token, now - timedelta(minutes=5), count=4)
    usage = usage_of(g, now=now)
    series = usage.timeseries
    assert series["bucket"].iloc[0] == start.replace(minute=0)
    assert list(series["requests"].iloc[[0, -1]]) == [2, 4]
    assert series["requests"].sum() == 6


def test_hourly_buckets_in_a_zone_with_half_hour_offset(one_token):
    g, token = one_token
    kolkata = ZoneInfo("Asia/Kolkata")
    g.request(token, datetime(2026, 11, 24, 10, 59, tzinfo=kolkata), count=1)
    g.request(token, datetime(2026, 11, 24, 11, 0, tzinfo=kolkata), count=2)
    g.request(token, datetime(2026, 11, 24, 11, 59, 59, tzinfo=kolkata), count=4)
    usage = usage_of(g, tz="Asia/Kolkata")
    by_bucket = {b.strftime("%H:%M"): n for b, n in zip(usage.timeseries["bucket"], usage.timeseries["requests"]) if n}
    assert by_bucket == {"10:00": 1, "11:00": 6}


def test_week_in_vienna_across_spring_dst_change_has_local_day_buckets(one_token):
    g, token = one_token
    vienna = ZoneInfo("Europe/Vienna")
    now = datetime(2026, 4, 1, 0, 30, tzinfo=vienna)    # CEST; a week ago it was CET
    # Local midnights on both sides of the change, and late evening rows that UTC days
    # would put on the wrong day.
    g.request(token, datetime(2026, 3, 28, 23, 30, tzinfo=vienna), count=1)   # Sat, CET
    g.request(token, datetime(2026, 3, 29, 0, 0, tzinfo=vienna), count=2)     # Sun 00:00 CET
    g.request(token, datetime(2026, 3, 29, 23, 59, tzinfo=vienna), count=4)   # Sun, CEST
    g.request(token, datetime(2026, 3, 30, 0, 30, tzinfo=vienna), count=8)    # Mon, CEST
    usage = usage_of(g, tz="Europe/Vienna", span="1w", now=now)
    series = usage.timeseries
    # From the day holding now - 7 days (Mar 24 23:30 CET) to the day holding now: 9 days.
    assert len(series) == 9
    days = [b.date().isoformat() for b in series["bucket"]]
    assert days[0] == "2026-03-24" and days[-1] == "2026-04-01"
    assert all(b.hour == 0 and b.minute == 0 for b in series["bucket"])
    counts = dict(zip(days, series["requests"]))
    assert (counts["2026-03-28"], counts["2026-03-29"], counts["2026-03-30"]) == (1, 6, 8)


def test_day_in_vienna_at_autumn_change_has_twenty_five_hourly_buckets(one_token):
    g, token = one_token
    first_two = datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc)   # 02:30 CEST
    second_two = datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc)  # 02:30 CET
    g.request(token, first_two, count=1)
    g.request(token, second_two, count=2)
    usage = usage_of(g, tz="Europe/Vienna", now=datetime(2026, 10, 25, 12, 0, tzinfo=timezone.utc))
    series = usage.timeseries
    assert len(series) == 25
    twos = series[[b.hour == 2 for b in series["bucket"]]]
    assert list(twos["requests"]) == [1, 2]


# --- the metrics ---------------------------------------------------------------------


def test_failed_means_status_400_and_above_and_null_is_not_failed(one_token):
    g, token = one_token
    at = NOW - timedelta(hours=1)
    for status, count in ((200, 1), (399, 2), (400, 4), (503, 8), (None, 16)):
        g.request(token, at, status=status, count=count)
    usage = usage_of(g)
    assert usage.metrics.total_requests == 31
    assert usage.metrics.failed_requests == 12


def test_average_response_times_by_path_ignore_nulls_and_other_paths(one_token):
    g, token = one_token
    at = NOW - timedelta(hours=1)
    g.request(token, at, path="/v1/chat/completions", ms=100)
    g.request(token, at, path="/completions", ms=200, status=500)   # failures count too
    g.request(token, at, path="/V1/COMPLETIONS", ms=301)             # case-insensitive
    g.request(token, at, path="/v1/chat/completions", ms=None)       # ignored
    g.request(token, at, path="/v1/responses", ms=5000)              # not a completion
    g.request(token, at, path="/v1/embeddings", ms=40, model="embed-small")
    g.request(token, at, path="/embeddings", ms=60, model="embed-small")
    metrics = usage_of(g).metrics
    assert metrics.avg_response_ms_completion == pytest.approx((100 + 200 + 301) / 3)
    assert metrics.avg_response_ms_embedding == pytest.approx(50.0)


def test_token_sums(one_token):
    g, token = one_token
    at = NOW - timedelta(hours=1)
    g.request(token, at, input_tokens=1_500_000_000, output_tokens=2_000_000_000, count=2)
    g.request(token, at, input_tokens=7, output_tokens=0)
    metrics = usage_of(g).metrics
    assert metrics.input_tokens == 3_000_000_007
    assert metrics.output_tokens == 4_000_000_000
    assert metrics.total_tokens == 7_000_000_007


# --- models --------------------------------------------------------------------------


def test_only_exactly_configured_models_count_in_every_figure(one_token):
    g, token = one_token
    at = NOW - timedelta(hours=1)
    g.request(token, at, model="gpt-4o", count=1)
    for other in ("GPT-4o", "gpt4o", "openai/gpt-4o", "", None):
        g.request(token, at, model=other, count=2, status=500)
    usage = usage_of(g)
    assert usage.metrics.total_requests == 1
    assert usage.metrics.failed_requests == 0
    assert usage.timeseries["requests"].sum() == 1
    assert usage.top["requests"].sum() == 1


def test_models_largest_first_ties_in_config_order_then_unused_in_config_order(one_token):
    g, token = one_token
    at = NOW - timedelta(hours=1)
    g.request(token, at, model="embed-small", count=3, path="/v1/embeddings")
    g.request(token, at, model="claude", count=1)
    g.request(token, at, model="gpt-4o", count=1)
    usage = usage_of(g, models=("gpt-4o", "claude", "embed-small", "never-used", "also-unused"))
    assert list(zip(usage.models["model"], usage.models["requests"])) == [
        ("embed-small", 3), ("gpt-4o", 1), ("claude", 1), ("never-used", 0), ("also-unused", 0),
    ]


def test_without_router_config_every_request_counts_and_table_models_are_known(one_token):
    g, token = one_token
    at = NOW - timedelta(hours=1)
    g.request(token, at, model="zeta", count=1)
    g.request(token, at, model="alpha", count=2)
    g.request(token, at, model="", count=4)
    g.request(token, at, model=None, count=8)
    g.request(token, NOW - timedelta(days=5), model="old-model", count=16)
    usage = usage_of(g, models=None)
    assert usage.metrics.total_requests == 15
    rows = list(zip(usage.models["model"], usage.models["requests"]))
    # Empty and NULL models count together under "", shown as N/A.
    assert rows == [("", 12), ("alpha", 2), ("zeta", 1), ("old-model", 0)]


# --- the top table -------------------------------------------------------------------


def test_token_table_ranks_by_requests_ties_by_name_then_id(gateway_db):
    g = gateway_db()
    acme = g.org("Acme")
    root = g.user("root", role="admin", org=acme)
    team = g.team(acme, "T")
    bot = g.service_account(team, "alpha-bot")
    same_a = g.token(root, "same")
    same_b = g.token(root, "same")
    zed = g.token(root, "zed")
    bot_token = g.token(root, "zzz-key", service_account=bot)
    at = NOW - timedelta(hours=1)
    g.request(zed, at, count=3)
    g.request(same_b, at, count=2)
    g.request(same_a, at, count=2)
    g.request(bot_token, at, count=2)
    usage = usage_of(g)
    top = usage.top
    assert list(top["id"]) == [zed, bot_token, same_a, same_b]
    assert list(top["rank"]) == [1, 2, 3, 4]
    bot_row = top.iloc[1]
    assert (bot_row["display_name"], bot_row["name"], bot_row["service_account"], bot_row["is_service_account"]) == (
        "alpha-bot", "zzz-key", "alpha-bot", True,
    )
    assert set(top["owner_email"]) == {"root@example.org"}


def test_top_k_keeps_the_largest(one_token):
    g, _ = one_token
    acme = 1
    owner = g.user("many", role="user", org=acme)
    at = NOW - timedelta(hours=1)
    tokens = [g.token(owner, f"t{i:02d}") for i in range(12)]
    for i, token in enumerate(tokens):
        g.request(token, at, count=i + 1)
    usage = usage_of(g, top=10)
    assert len(usage.top) == 10
    assert list(usage.top["requests"]) == list(range(12, 2, -1))


def test_user_id_table_when_a_token_is_selected(one_token):
    g, token = one_token
    at = NOW - timedelta(hours=1)
    g.request(token, at, user_id="", count=1, input_tokens=1, output_tokens=2)
    g.request(token, at, user_id="alice", count=2, input_tokens=10, output_tokens=20)
    g.request(token, at, user_id="Alice", count=2)
    usage = usage_of(g, token=token)
    assert usage.top_kind == "user_id"
    rows = usage.to_json()["top"]["rows"]
    assert [(r["id"], r["requests"]) for r in rows] == [("Alice", 2), ("alice", 2), ("", 1)]
    assert rows[1]["total_tokens"] == 2 * 30
    assert rows[2]["input_tokens"] == 1 and rows[2]["output_tokens"] == 2


def test_org_table_groups_by_owner_org_with_no_profile_row_last_among_ties(gateway_db):
    g = gateway_db()
    acme, beta = g.org("Acme"), g.org("Beta")
    root = g.user("root", role="admin", org=acme)
    bert = g.user("bert", role="user", org=beta)
    ghost = g.user("ghost", role="admin", org=None)
    team = g.team(acme, "T")
    bot = g.service_account(team, "bot")
    at = NOW - timedelta(hours=1)
    g.request(g.token(bert, "b", service_account=bot), at, count=2)   # counts for Beta (owner)
    g.request(g.token(root, "r"), at, count=1)
    g.request(g.token(ghost, "g"), at, count=1)
    rows = usage_of(g, org="all").to_json()["top"]["rows"]
    assert [(r["id"], r["name"], r["requests"]) for r in rows] == [
        (beta, "Beta", 2), (acme, "Acme", 1), (None, None, 1),
    ]


# --- the refresh itself --------------------------------------------------------------


def test_a_refresh_sends_at_most_three_statements_also_with_the_previous_period(one_token):
    g, token = one_token
    g.request(token, NOW - timedelta(hours=1))
    assert refresh(g)[1] <= 3
    assert refresh(g, models=None)[1] <= 3
    assert refresh(g, compare=False)[1] <= 3
    assert refresh(g, models=None, compare=False)[1] <= 3


def test_gateway_without_user_id_column_keeps_working_and_says_so(gateway_db):
    g = gateway_db(user_id_column=False)
    acme = g.org("Acme")
    root = g.user("root", role="admin", org=acme)
    ursula = g.user("ursula", role="user", org=acme)
    token = g.token(root, "main")
    g.request(token, NOW - timedelta(hours=1), count=3)
    g.request(g.token(ursula, "hers"), NOW - timedelta(hours=1), count=1)
    db = open_database(g.url)
    assert not db.has_user_id
    admin = compute_usage(db, "root", Selection(now=NOW, token=token))
    assert admin.metrics.total_requests == 3
    assert admin.top.empty and admin.notices
    assert compute_usage(db, "ursula", Selection(now=NOW)).metrics.total_requests == 1
    db.close()


def test_json_report_follows_the_contract(one_token):
    g, token = one_token
    g.request(token, NOW - timedelta(hours=1), count=2)
    data = usage_of(g).to_json()
    assert set(data) >= {"version", "scope", "metrics", "cost", "previous", "changes", "timeseries", "models", "top"}
    assert data["version"] == 3
    assert data["scope"] == {
        "viewer": "root@example.org", "role": "admin", "org": {"id": 1, "name": "Acme"},
        "span": "1d", "token": None, "now": "2026-11-24T12:00:00+00:00",
        "window_start": "2026-11-23T12:00:00+00:00", "window_end": None, "tz": "UTC",
    }
    assert data["timeseries"][0] == {"bucket": "2026-11-23T12:00:00+00:00", "requests": 0, "input_tokens": 0,
                                     "output_tokens": 0, "cost": "0"}
    row = data["top"]["rows"][0]
    assert row == {
        "rank": 1, "id": token, "name": "main", "requests": 2, "input_tokens": 20, "output_tokens": 10,
        "total_tokens": 30, "cost": "0", "previous_requests": 0, "change": None, "new": True,
        "owner_email": "root@example.org", "service_account": None, "can_open": True,
    }
    assert data["top"]["stopped"] == []
    assert data["cost"] == {"currency": None, "total": "0", "unpriced_requests": 2, "unpriced_input_tokens": 20,
                            "unpriced_output_tokens": 10}
    assert data["previous"]["window_start"] == "2026-11-22T12:00:00+00:00"
    assert data["changes"]["total_requests"] is None  # nothing before: no change to give


# --- the finer frames for analyses ------------------------------------------------------


def test_breakdown_holds_requests_per_model_key_and_bucket(one_token):
    g, token = one_token
    other = g.token(g.user("olive", role="user", org=g.org("Other")), "other")
    day = NOW - timedelta(days=1)
    g.request(token, NOW - timedelta(days=3), count=1)
    g.request(token, NOW - timedelta(days=3), model="claude", count=2)
    g.request(other, NOW - timedelta(days=3), count=4)
    g.request(token, day, count=8)
    usage = usage_of(g, span="1w", org="all")
    rows = {(row.model, int(row.key), row.bucket.date().isoformat()): row.requests
            for row in usage.breakdown.itertuples()}
    three_days_ago = (NOW - timedelta(days=3)).date().isoformat()
    assert rows == {
        ("gpt-4o", token, three_days_ago): 1,
        ("claude", token, three_days_ago): 2,
        ("gpt-4o", other, three_days_ago): 4,
        ("gpt-4o", token, day.date().isoformat()): 8,
    }
    assert usage.key_kind == "token"


def test_groups_hold_the_sums_per_model_and_key(one_token):
    g, token = one_token
    g.request(token, NOW - timedelta(hours=2), count=3, ms=100, input_tokens=7, output_tokens=1)
    g.request(token, NOW - timedelta(hours=2), path="/v1/embeddings", model="embed-small", count=2, ms=40,
              status=500, input_tokens=5, output_tokens=0)
    groups = usage_of(g).groups.set_index("model")
    assert groups.loc["gpt-4o", ["requests", "failed", "input_tokens", "output_tokens", "completion_ms_sum",
                                 "completion_n"]].tolist() == [3, 0, 21, 3, 300, 3]
    assert groups.loc["embed-small", ["requests", "failed", "embedding_ms_sum", "embedding_n"]].tolist() == [2, 2, 80, 2]


# --- 1m and custom ranges (issue 13, item 5) -------------------------------------------


def test_month_counts_thirty_days_back_without_upper_bound_in_31_daily_buckets(one_token):
    g, token = one_token
    start = NOW - timedelta(days=30)                      # 2026-10-25 12:00 UTC
    g.request(token, start - US, count=1)                 # out
    g.request(token, start, count=2)                      # first day, partial
    g.request(token, NOW - timedelta(hours=1), count=4)   # today
    g.request(token, NOW + timedelta(days=2), count=8)    # after now: counts, no bucket
    usage = usage_of(g, span="1m")
    series = usage.timeseries
    assert usage.metrics.total_requests == 2 + 4 + 8
    # Days Oct 25 .. Nov 24: 7 + 24 = 31 buckets, the first partial.
    assert len(series) == 31
    assert series["bucket"].iloc[0] == datetime(2026, 10, 25, tzinfo=timezone.utc)
    assert series["bucket"].iloc[-1] == datetime(2026, 11, 24, tzinfo=timezone.utc)
    assert list(series["requests"].iloc[[0, -1]]) == [2, 4] and series["requests"].sum() == 6
    scope = usage.to_json()["scope"]
    assert (scope["span"], scope["window_start"], scope["window_end"]) == ("1m", "2026-10-25T12:00:00+00:00", None)


def test_custom_range_is_half_open(one_token):
    g, token = one_token
    start, end = NOW - timedelta(days=3), NOW - timedelta(days=1)   # Nov 21 12:00 .. Nov 23 12:00
    g.request(token, start - US, count=1)                 # before: out
    g.request(token, start, count=2)                      # exactly at start: in
    g.request(token, end - US, count=4)                   # 1 µs before end: in
    g.request(token, end, count=8)                        # exactly at end: out
    g.request(token, end, count=16, long_form=True)       # same, "...:00.000000" on SQLite: out
    g.request(token, NOW, count=32)                       # after the range: out
    usage = usage_of(g, start=start, end=end)
    assert usage.metrics.total_requests == 2 + 4
    assert sum(usage.models["requests"]) == 6 and usage.top["requests"].sum() == 6
    # 48 hours exactly: hourly buckets, 21 12:00 .. 23 11:00 (the bucket of 23 12:00 is not in it).
    series = usage.timeseries
    assert len(series) == 48
    assert series["bucket"].iloc[0] == start and series["bucket"].iloc[-1] == end - timedelta(hours=1)
    assert list(series["requests"].iloc[[0, -1]]) == [2, 4] and series["requests"].sum() == 6


def test_custom_range_with_microseconds_and_partial_buckets(one_token):
    g, token = one_token
    start = NOW - timedelta(hours=1, minutes=30, microseconds=-250000)   # 10:30:00.25
    end = NOW - timedelta(minutes=30, seconds=-30)                        # 11:30:30
    g.request(token, start.replace(microsecond=0), count=1)   # short form, before start
    g.request(token, start, count=2)
    g.request(token, end - timedelta(seconds=1), count=4)     # 11:30:29, short form, in
    g.request(token, end, count=8)                            # short form, at end: out
    usage = usage_of(g, start=start, end=end)
    assert usage.metrics.total_requests == 6
    series = usage.timeseries                                 # minutes 10:30 .. 11:30
    assert len(series) == 61 and list(series["requests"].iloc[[0, -1]]) == [2, 4]
    assert usage.window.edges[-1] == NOW - timedelta(minutes=29)


@pytest.mark.parametrize("length, unit, buckets", [
    (timedelta(hours=2), "minute", 120),
    (timedelta(hours=2, minutes=1), "hour", 3),
    (timedelta(days=2), "hour", 48),
    (timedelta(days=2, hours=1), "day", 3),
    (timedelta(minutes=1), "minute", 1),
])
def test_custom_range_bucket_unit_by_length(one_token, length, unit, buckets):
    g, token = one_token
    end = datetime(2026, 11, 24, 0, 0, tzinfo=timezone.utc)   # a midnight: every bucket is whole
    g.request(token, end - length, count=1)
    g.request(token, end - US, count=2)
    usage = usage_of(g, start=end - length, end=end)
    assert usage.window.spec.bucket_unit == unit
    assert len(usage.timeseries) == buckets
    assert usage.timeseries["requests"].sum() == 3
    assert usage.to_json()["scope"]["span"] == "custom"


def test_custom_range_without_offset_is_read_in_the_zone(one_token):
    g, token = one_token
    vienna = ZoneInfo("Europe/Vienna")
    g.request(token, datetime(2026, 11, 20, 0, 0, tzinfo=vienna) - US, count=1)   # 19 Nov 22:59:59.999999 UTC
    g.request(token, datetime(2026, 11, 20, 0, 0, tzinfo=vienna), count=2)        # 19 Nov 23:00 UTC
    g.request(token, datetime(2026, 11, 22, 23, 59, tzinfo=vienna), count=4)
    g.request(token, datetime(2026, 11, 23, 0, 0, tzinfo=vienna), count=8)        # end: out
    usage = usage_of(g, tz="Europe/Vienna", start="2026-11-20T00:00", end="2026-11-23")
    assert usage.metrics.total_requests == 2 + 4
    series = usage.timeseries                                # 3 days: daily buckets on Vienna's clock
    assert [b.isoformat() for b in series["bucket"]] == [
        "2026-11-20T00:00:00+01:00", "2026-11-21T00:00:00+01:00", "2026-11-22T00:00:00+01:00",
    ]
    assert list(series["requests"]) == [2, 0, 4]
    scope = usage.to_json()["scope"]
    assert scope["window_start"] == "2026-11-20T00:00:00+01:00"
    assert scope["window_end"] == "2026-11-23T00:00:00+01:00"
    assert scope["now"] == "2026-11-24T13:00:00+01:00"


@pytest.mark.parametrize("start, end, message", [
    ("yesterday", "2026-11-24T00:00+00:00", "start: not an ISO 8601 time: 'yesterday' (e.g. 2026-11-24T12:00 or 2026-11-24T12:00+01:00)"),
    ("2026-11-23T00:00+00:00", "2026-11-24T25:00", "end: not an ISO 8601 time: '2026-11-24T25:00' (e.g. 2026-11-24T12:00 or 2026-11-24T12:00+01:00)"),
    ("2026-11-24T00:00+00:00", "2026-11-24T00:00+00:00",
     "the range's start 2026-11-24T00:00:00+00:00 is not before its end 2026-11-24T00:00:00+00:00"),
    ("2026-11-24T01:00+00:00", "2026-11-24T00:00+00:00",
     "the range's start 2026-11-24T01:00:00+00:00 is not before its end 2026-11-24T00:00:00+00:00"),
    ("2026-11-24T00:00:00+00:00", "2026-11-24T00:00:59.999999+00:00",
     "the range 2026-11-24T00:00:00+00:00 to 2026-11-24T00:00:59.999999+00:00 is shorter than a minute"),
    ("2026-11-24T00:00+00:00", "2026-11-24T12:00:00.000001+00:00",
     "the range ends at 2026-11-24T12:00:00.000001+00:00, after now (2026-11-24T12:00:00+00:00)"),
    ("2026-11-24T00:00+00:00", None, "a custom range needs both start and end"),
    (None, "2026-11-24T00:00+00:00", "a custom range needs both start and end"),
])
def test_custom_range_errors_are_one_line(one_token, start, end, message):
    g, _ = one_token
    with pytest.raises(UsageError) as caught:
        usage_of(g, start=start, end=end)
    assert str(caught.value) == message


def test_custom_range_may_end_exactly_now_and_presets_keep_their_window(one_token):
    g, token = one_token
    g.request(token, NOW - US, count=1)
    g.request(token, NOW, count=2)
    assert usage_of(g, start=NOW - timedelta(hours=1), end=NOW).metrics.total_requests == 1
    # The same hour as the 1h preset: that one has no upper bound.
    assert usage_of(g, span="1h").metrics.total_requests == 3


@pytest.mark.parametrize("tz", ["UTC", "Europe/Vienna", "Asia/Kolkata"])
def test_custom_ranges_count_like_a_plain_python_filter(one_token, tz):
    """A property, on seeded random data: for random ranges (a minute to a week, either
    side of the bucket thresholds, any microsecond), the total is the number of rows with
    start <= t < end, and every one of them is in the chart, in the bucket holding it."""
    import random

    g, token = one_token
    rng = random.Random(13)
    back = timedelta(days=14)
    stamps = [NOW - back * rng.random() for _ in range(60)]                    # any microsecond
    stamps += [NOW - timedelta(hours=rng.randrange(24 * 14)) for _ in range(20)]  # round hours
    for stamp in stamps:
        g.request(token, stamp)
    lengths = [timedelta(minutes=1), timedelta(hours=2), timedelta(hours=2, microseconds=1),
               timedelta(days=2), timedelta(days=2, seconds=1), timedelta(days=7)]
    checked = 0
    for length in lengths * 2:
        length += timedelta(seconds=rng.randrange(2) * rng.randrange(3600))
        end = NOW - back / 2 * rng.random()
        start = end - length
        usage = usage_of(g, tz=tz, start=start, end=end)
        inside = [stamp for stamp in stamps if start <= stamp < end]
        assert usage.metrics.total_requests == len(inside)
        starts = list(usage.timeseries["bucket"])
        assert starts[0] <= start and starts[-1] < end <= usage.window.end
        expected = [0] * len(starts)
        for stamp in inside:
            expected[max(i for i, bucket in enumerate(starts) if bucket <= stamp)] += 1
        assert list(usage.timeseries["requests"]) == expected
        checked += len(inside)
    assert checked > 20


def test_a_previous_period_older_than_the_gateways_oldest_request_is_called_partial(one_token):
    g, token = one_token
    g.request(token, NOW - timedelta(hours=30))  # inside the previous day (NOW-48h to NOW-24h)
    assert PREVIOUS_PARTIAL_NOTICE in usage_of(g, span="1d").notices
    g.request(token, NOW - timedelta(hours=49))  # now the gateway holds all of it
    usage = usage_of(g, span="1d")
    assert PREVIOUS_PARTIAL_NOTICE not in usage.notices
    assert usage.previous.metrics.total_requests == 1

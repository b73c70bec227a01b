"""The demo generator: schema, organisation, traffic, storage details, determinism."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from usage_lib.gateway import schema
from usage_lib.demo import (
    DEMO_ADMIN_EMAIL,
    DEMO_CROSS_ORG_TOKEN,
    DEMO_EMBEDDING_MODEL,
    DEMO_EMPTY_EMAIL_USERNAME,
    DEMO_EMPTY_ORG,
    DEMO_MODELS,
    DEMO_NO_GROUP_EMAIL,
    DEMO_NO_PROFILE_USERNAME,
    DEMO_ORG_ADMIN_EMAIL,
    DEMO_ORGS,
    DEMO_PATHS,
    DEMO_SHARED_TOKEN_NAME,
    DEMO_UNUSED_MODEL,
    DEMO_USER_EMAIL,
    DemoDatabase,
    build_demo,
    demo_paths,
)
from usage_lib.gateway.routerconfig import load_router_config

NOW = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=timezone.utc)
N = 3000

DJANGO_TEXT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?$")


def parse_django(text: str) -> datetime:
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)


def build(directory: Path, name: str = "demo.sqlite3", **kwargs) -> DemoDatabase:
    url, router = demo_paths(directory / name)
    kwargs.setdefault("requests", N)
    kwargs.setdefault("now", NOW)
    return build_demo(url, router, **kwargs)


def aware(value):
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def dump(url: str) -> dict[str, list[tuple]]:
    """Every row of every gateway table, in id order; datetimes aware (SQLite: as UTC)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: [
                    tuple(aware(v) for v in row)
                    for row in conn.execute(sa.select(t).order_by(t.c.id))
                ]
                for name, t in schema.metadata.tables.items()
            }
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoDatabase:
    return build(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def conn(demo):
    engine = sa.create_engine(demo.url)
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def scalar(conn, sql: str, **params):
    return conn.execute(sa.text(sql), params).scalar_one()


def column(conn, sql: str, **params) -> list:
    return list(conn.execute(sa.text(sql), params).scalars())


# --------------------------------------------------------------------------------------
# API, files, schema
# --------------------------------------------------------------------------------------


def test_demo_paths():
    url, router = demo_paths(Path("demo/demo.sqlite3"))
    assert url == "sqlite:///demo/demo.sqlite3"
    assert router == Path("demo/demo-router.yaml")
    url, router = demo_paths(Path("/tmp/x/usage.db"))
    assert url == "sqlite:////tmp/x/usage.db"
    assert router == Path("/tmp/x/usage-router.yaml")


def test_result_describes_what_was_written(demo):
    assert demo.requests == N
    assert demo.now == NOW
    assert demo.url.startswith("sqlite:///")
    assert demo.router_config.name == "demo-router.yaml"
    assert Path(demo.url.removeprefix("sqlite:///")).is_file()


def test_tables_columns_and_indexes_are_the_gateways(conn):
    inspector = sa.inspect(conn)
    assert set(schema.metadata.tables) <= set(inspector.get_table_names())
    for name, table in schema.metadata.tables.items():
        columns = inspector.get_columns(name)
        assert [c["name"] for c in columns] == [c.name for c in table.columns], name
        assert {c["name"]: c["nullable"] for c in columns} == {
            c.name: c.nullable for c in table.columns
        }, name
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(name)}
        expected = {i.name: [c.name for c in i.columns] for i in table.indexes}
        assert indexes == expected, name
    assert set(schema.REQUIRED_COLUMNS) <= set(schema.metadata.tables)


def test_router_config_is_litellm_format(demo):
    data = yaml.safe_load(demo.router_config.read_text())
    entries = data["model_list"]
    for entry in entries:
        assert set(entry) == {"model_name", "litellm_params", "model_info"}
        assert entry["litellm_params"]["model"]
    names = [e["model_name"] for e in entries]
    assert len(names) == len(set(names)) + 1  # one model has two deployments
    assert load_router_config(demo.router_config) == DEMO_MODELS
    assert len(DEMO_MODELS) >= 6


def test_refuses_a_database_that_has_the_tables(demo, tmp_path):
    with pytest.raises(ValueError, match="management_request"):
        build_demo(demo.url, tmp_path / "router.yaml", requests=10, now=NOW)
    assert not (tmp_path / "router.yaml").exists()


def test_refuses_negative_counts_and_other_databases(tmp_path):
    with pytest.raises(ValueError):
        build(tmp_path, requests=-1)
    with pytest.raises(ValueError, match="SQLite or PostgreSQL"):
        build_demo("mysql://x/y", tmp_path / "r.yaml", requests=1, now=NOW)


# --------------------------------------------------------------------------------------
# The organisation
# --------------------------------------------------------------------------------------


def role_of(conn, email: str) -> set[str]:
    return set(
        column(
            conn,
            "SELECT g.name FROM auth_user u JOIN auth_user_groups ug ON ug.user_id = u.id "
            "JOIN auth_group g ON g.id = ug.group_id WHERE u.email = :email",
            email=email,
        )
    )


def org_of(conn, email: str) -> str | None:
    rows = column(
        conn,
        "SELECT o.name FROM auth_user u JOIN management_userprofile p ON p.user_id = u.id "
        "JOIN management_org o ON o.id = p.org_id WHERE u.email = :email",
        email=email,
    )
    return rows[0] if rows else None


def test_orgs_and_the_empty_org(conn):
    assert column(conn, "SELECT name FROM management_org ORDER BY id") == list(DEMO_ORGS)
    assert len(DEMO_ORGS) >= 4
    assert scalar(
        conn,
        "SELECT count(*) FROM management_userprofile p JOIN management_org o "
        "ON o.id = p.org_id WHERE o.name = :org",
        org=DEMO_EMPTY_ORG,
    ) == 0
    for org in DEMO_ORGS:
        if org != DEMO_EMPTY_ORG:
            assert scalar(
                conn,
                "SELECT count(*) FROM management_team t JOIN management_org o "
                "ON o.id = t.org_id WHERE o.name = :org",
                org=org,
            ) >= 1


def test_all_roles_exist(conn):
    groups = column(conn, "SELECT name FROM auth_group")
    assert sorted(groups) == ["admin", "org-admin", "user"]
    for group in groups:
        assert scalar(
            conn,
            "SELECT count(*) FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id "
            "WHERE g.name = :g",
            g=group,
        ) >= 1
    # at least one org admin in each org with users
    assert scalar(
        conn,
        "SELECT count(DISTINCT p.org_id) FROM management_userprofile p "
        "JOIN auth_user_groups ug ON ug.user_id = p.user_id "
        "JOIN auth_group g ON g.id = ug.group_id WHERE g.name = 'org-admin'",
    ) == 3


def test_demo_users(conn):
    assert "admin" in role_of(conn, DEMO_ADMIN_EMAIL)
    assert org_of(conn, DEMO_ADMIN_EMAIL) == DEMO_ORGS[0]
    assert "org-admin" in role_of(conn, DEMO_ORG_ADMIN_EMAIL)
    assert "admin" not in role_of(conn, DEMO_ORG_ADMIN_EMAIL)
    assert org_of(conn, DEMO_ORG_ADMIN_EMAIL) == DEMO_ORGS[0]
    assert role_of(conn, DEMO_USER_EMAIL) == {"user"}
    assert org_of(conn, DEMO_USER_EMAIL) == DEMO_ORGS[0]
    assert role_of(conn, DEMO_NO_GROUP_EMAIL) == set()
    assert org_of(conn, DEMO_NO_GROUP_EMAIL) is not None
    assert scalar(
        conn, "SELECT email FROM auth_user WHERE username = :u", u=DEMO_EMPTY_EMAIL_USERNAME
    ) == ""


def test_the_standard_users_teams_have_service_accounts(conn):
    rows = conn.execute(
        sa.text(
            "SELECT m.team_id, m.is_admin, count(s.id) FROM auth_user u "
            "JOIN management_userprofile p ON p.user_id = u.id "
            "JOIN management_teammembership m ON m.user_profile_id = p.id "
            "LEFT JOIN management_serviceaccount s ON s.team_id = m.team_id "
            "WHERE u.email = :email GROUP BY m.team_id, m.is_admin"
        ),
        {"email": DEMO_USER_EMAIL},
    ).all()
    assert len(rows) >= 2
    assert all(n >= 1 for _team, _admin, n in rows)
    assert scalar(conn, "SELECT count(*) FROM management_teammembership WHERE is_admin") >= 3
    assert scalar(conn, "SELECT count(*) FROM management_teammembership WHERE NOT is_admin") >= 3


def test_superuser_without_profile_owns_a_used_token(conn):
    user_id = scalar(conn, "SELECT id FROM auth_user WHERE username = :u",
                     u=DEMO_NO_PROFILE_USERNAME)
    assert scalar(conn, "SELECT count(*) FROM management_userprofile WHERE user_id = :u",
                  u=user_id) == 0
    assert scalar(
        conn,
        "SELECT count(*) FROM management_request r JOIN management_token t "
        "ON t.id = r.token_id WHERE t.user_id = :u",
        u=user_id,
    ) > 0


def test_personal_and_service_account_tokens(conn):
    assert scalar(conn, "SELECT count(*) FROM management_token "
                        "WHERE service_account_id IS NULL") >= 5
    assert scalar(conn, "SELECT count(*) FROM management_token "
                        "WHERE service_account_id IS NOT NULL") >= 5
    assert column(
        conn, "SELECT count(*) FROM management_token WHERE name = :n", n=DEMO_SHARED_TOKEN_NAME
    ) == [2]


def test_cross_org_service_account_token(conn):
    rows = conn.execute(
        sa.text(
            "SELECT t.name, owner_org.name, team_org.name FROM management_token t "
            "JOIN management_userprofile p ON p.user_id = t.user_id "
            "JOIN management_org owner_org ON owner_org.id = p.org_id "
            "JOIN management_serviceaccount s ON s.id = t.service_account_id "
            "JOIN management_team team ON team.id = s.team_id "
            "JOIN management_org team_org ON team_org.id = team.org_id "
            "WHERE p.org_id <> team.org_id"
        )
    ).all()
    assert [r[0] for r in rows] == [DEMO_CROSS_ORG_TOKEN]
    assert scalar(
        conn,
        "SELECT count(*) FROM management_request r JOIN management_token t ON t.id = r.token_id "
        "WHERE t.name = :n",
        n=DEMO_CROSS_ORG_TOKEN,
    ) > 0


# --------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------


def test_exact_row_count_ids_in_time_order(conn):
    ids_and_times = conn.execute(
        sa.text("SELECT id, timestamp FROM management_request ORDER BY id")
    ).all()
    assert len(ids_and_times) == N
    assert [i for i, _ in ids_and_times] == list(range(1, N + 1))
    times = [parse_django(t) for _, t in ids_and_times]
    assert times == sorted(times)


def test_both_django_timestamp_forms(conn):
    stamps = column(conn, "SELECT timestamp FROM management_request")
    assert all(DJANGO_TEXT.match(s) for s in stamps)
    whole = [s for s in stamps if len(s) == 19]
    fractional = [s for s in stamps if len(s) == 26]
    assert len(whole) + len(fractional) == N
    assert 0.02 * N < len(whole) < 0.10 * N
    assert not any(s.endswith(".000000") for s in stamps)
    for stamp in column(conn, "SELECT created_at FROM management_token") + column(
        conn, "SELECT expires_at FROM management_token WHERE expires_at IS NOT NULL"
    ):
        assert DJANGO_TEXT.match(stamp)


def test_two_weeks_up_to_now(conn):
    times = [parse_django(s) for s in column(conn, "SELECT timestamp FROM management_request")]
    first, last = min(times), max(times)
    assert last <= NOW
    assert NOW - last < timedelta(hours=1)
    assert NOW - timedelta(days=14, seconds=1) <= first < NOW - timedelta(days=13, hours=12)
    assert any(NOW - t <= timedelta(hours=1) for t in times)


def test_daily_and_weekly_rhythm(conn):
    times = [parse_django(s) for s in column(conn, "SELECT timestamp FROM management_request")]
    weekday = sum(t.weekday() < 5 for t in times) / 10
    weekend = sum(t.weekday() >= 5 for t in times) / 4
    assert weekend < 0.7 * weekday
    office = sum(9 <= t.hour < 17 for t in times) / 8
    night = sum(2 <= t.hour < 6 for t in times) / 4
    assert night < 0.7 * office


def test_skewed_token_usage(conn):
    counts = column(conn, "SELECT count(*) FROM management_request GROUP BY token_id "
                          "ORDER BY 1 DESC")
    assert len(counts) >= 15
    assert counts[0] > 10 * counts[-1]


def test_models(conn):
    counts = dict(conn.execute(
        sa.text("SELECT model, count(*) FROM management_request GROUP BY model")
    ).all())
    assert DEMO_UNUSED_MODEL not in counts
    for model in DEMO_MODELS:
        if model != DEMO_UNUSED_MODEL:
            assert counts.get(model, 0) > 0, model
    outside = {m for m in counts if m not in DEMO_MODELS}
    assert {"GPT-4o", ""} <= outside
    assert sum(counts[m] for m in outside) < 0.05 * N


def test_paths_and_embeddings(conn):
    paths = set(column(conn, "SELECT DISTINCT path FROM management_request"))
    assert paths == set(DEMO_PATHS)
    assert column(
        conn, "SELECT DISTINCT path FROM management_request WHERE model = :m",
        m=DEMO_EMBEDDING_MODEL,
    ) == ["/v1/embeddings"]
    assert scalar(conn, "SELECT max(output_tokens) FROM management_request "
                        "WHERE path = '/v1/embeddings'") == 0
    assert scalar(conn, "SELECT min(input_tokens) FROM management_request") >= 0
    assert scalar(conn, "SELECT min(output_tokens) FROM management_request") >= 0
    assert scalar(conn, "SELECT avg(output_tokens) FROM management_request "
                        "WHERE path = '/v1/chat/completions' AND status_code = 200") > 50


def test_failures_and_nulls(conn):
    codes = set(column(conn, "SELECT DISTINCT status_code FROM management_request"))
    assert {200, 399, 400, 429, 500} <= codes
    assert None in codes
    assert any(c is not None and 400 <= c < 500 for c in codes)
    assert any(c is not None and c >= 500 for c in codes)
    failed = scalar(conn, "SELECT count(*) FROM management_request WHERE status_code >= 400")
    assert 0.01 * N < failed < 0.15 * N
    assert scalar(conn, "SELECT count(*) FROM management_request "
                        "WHERE response_time_ms IS NULL AND status_code IS NOT NULL") > 0


def test_user_ids(conn):
    values = column(conn, "SELECT user_id FROM management_request")
    assert values.count("") > 0.5 * N
    assert any(re.fullmatch(r"u-\d{4}", v) for v in values)
    emails = set(column(conn, "SELECT email FROM auth_user WHERE email <> ''"))
    assert sum(v in emails for v in values) > 0
    near_misses = {v for v in values if v not in emails and v.strip().lower() in emails}
    assert any(v != v.strip() for v in near_misses)
    assert any(v != v.lower() for v in near_misses)


def test_standard_users_email_on_other_users_tokens_of_their_org(conn):
    owners = column(
        conn,
        "SELECT DISTINCT owner.email FROM management_request r "
        "JOIN management_token t ON t.id = r.token_id "
        "JOIN auth_user owner ON owner.id = t.user_id "
        "JOIN management_userprofile p ON p.user_id = owner.id "
        "JOIN management_org o ON o.id = p.org_id "
        "WHERE r.user_id = :email AND o.name = :org AND owner.email <> :email",
        email=DEMO_USER_EMAIL,
        org=DEMO_ORGS[0],
    )
    assert owners


# --------------------------------------------------------------------------------------
# Determinism, PostgreSQL
# --------------------------------------------------------------------------------------


def test_deterministic_for_seed_and_now(demo, tmp_path):
    again = build(tmp_path, "again.sqlite3")
    assert dump(again.url) == dump(demo.url)
    assert again.router_config.read_text() == demo.router_config.read_text()
    other = build(tmp_path, "other.sqlite3", seed=8)
    assert dump(other.url)["management_request"] != dump(demo.url)["management_request"]


def test_default_now_is_the_current_time(tmp_path):
    before = datetime.now(timezone.utc)
    demo = build_demo(*demo_paths(tmp_path / "now.sqlite3"), requests=50)
    assert before <= demo.now <= datetime.now(timezone.utc)
    assert demo.now.tzinfo is not None
    assert len(dump(demo.url)["management_request"]) == 50


def test_small_and_empty_request_counts(tmp_path):
    for n in (0, 1, 7, 150):
        demo = build(tmp_path, f"n{n}.sqlite3", requests=n)
        assert len(dump(demo.url)["management_request"]) == n


def test_postgresql_same_content_as_sqlite(demo, fresh_postgres_database, tmp_path):
    url = fresh_postgres_database("demo")
    pg = build_demo(url, tmp_path / "router.yaml", requests=N, now=NOW)
    assert pg.requests == N
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            kind = scalar(
                conn,
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'management_request' AND column_name = 'timestamp'",
            )
            indexes = set(column(
                conn, "SELECT indexname FROM pg_indexes WHERE tablename = 'management_request'"
            ))
            # explicit ids were inserted: the sequences must have moved on
            conn.execute(sa.text("INSERT INTO management_org (name) VALUES ('New org')"))
            conn.rollback()
    finally:
        engine.dispose()
    assert kind == "timestamp with time zone"
    assert {i.name for i in schema.management_request.indexes} <= indexes

    assert dump(url) == dump(demo.url)

"""Opening a gateway database: read-only, and a clear one-line error for each way it fails."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tests.support.gateway import GatewayBuilder
from usage_lib import UsageError, load_router_config, open_database
from usage_lib.gateway.routerconfig import parse_router_config


def test_missing_sqlite_file(tmp_path):
    with pytest.raises(UsageError, match="database file not found"):
        open_database(f"sqlite:///{tmp_path}/nope.sqlite3")


def test_missing_file_is_not_created(tmp_path):
    with pytest.raises(UsageError):
        open_database(f"sqlite:///{tmp_path}/nope.sqlite3")
    assert not (tmp_path / "nope.sqlite3").exists()


@pytest.mark.parametrize("url", ["not a url", "mysql://x@y/z", "sqlite://", "sqlite:///:memory:"])
def test_unusable_urls(url):
    with pytest.raises(UsageError):
        open_database(url)


def test_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "text.sqlite3"
    path.write_text("hello, I am not a database\n" * 100)
    with pytest.raises(UsageError, match="not an SQLite database"):
        open_database(f"sqlite:///{path}")


def test_database_without_gateway_tables_names_the_missing_ones(tmp_path):
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE auth_user (id integer, username text, email text, is_active bool)")
        conn.execute("CREATE TABLE management_org (id integer, name text)")
    with pytest.raises(UsageError) as raised:
        open_database(f"sqlite:///{path}")
    message = str(raised.value)
    assert "management_request" in message and "management_token" in message
    assert "auth_user," not in message and "management_org," not in message
    assert "\n" not in message


def test_missing_required_column_is_named(tmp_path):
    url = f"sqlite:///{tmp_path}/g.sqlite3"
    GatewayBuilder(url).close()
    with sqlite3.connect(tmp_path / "g.sqlite3") as conn:
        conn.execute("ALTER TABLE management_request DROP COLUMN response_time_ms")
    with pytest.raises(UsageError, match="management_request lacks column.*response_time_ms"):
        open_database(url)


def test_unreachable_postgres_server():
    with pytest.raises(UsageError, match="cannot reach PostgreSQL at 127.0.0.1:9"):
        open_database("postgresql://user:secret@127.0.0.1:9/gateway")


def test_unknown_postgres_user_is_reported_as_wrong_credentials(fresh_postgres_database):
    url = make_url(fresh_postgres_database()).set(username="nobody_here", password="wrong")
    with pytest.raises(UsageError, match="wrong credentials") as raised:
        open_database(url.render_as_string(hide_password=False))
    assert "wrong" not in str(raised.value).replace("wrong credentials", "")


def test_missing_postgres_database(fresh_postgres_database):
    url = make_url(fresh_postgres_database()).set(database="no_such_db")
    with pytest.raises(UsageError, match="no database 'no_such_db'"):
        open_database(url.render_as_string(hide_password=False))


def test_password_is_never_shown(fresh_postgres_database):
    url = make_url(fresh_postgres_database()).set(password="s3cret-pw")
    GatewayBuilder(url.render_as_string(hide_password=False)).close()
    db = open_database(url.render_as_string(hide_password=False))
    assert "s3cret-pw" not in db.url
    db.close()


def write_attempts(conn):
    yield "INSERT INTO management_org (id, name) VALUES (999, 'intruder')"
    yield "UPDATE management_request SET model = 'x'"
    yield "CREATE TABLE intruder (id integer)"


def test_sqlite_connection_refuses_writes(tmp_path):
    url = f"sqlite:///{tmp_path}/g.sqlite3"
    GatewayBuilder(url).close()
    db = open_database(url)
    for statement in write_attempts(None):
        with db.engine.connect() as conn:
            with pytest.raises(DBAPIError, match="readonly|read-only"):
                conn.execute(text(statement))
                conn.commit()
    db.close()
    check = create_engine(url)
    with check.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM management_org")).scalar() == 0
    check.dispose()


def test_postgres_connection_refuses_writes(fresh_postgres_database):
    url = fresh_postgres_database()
    GatewayBuilder(url).close()
    db = open_database(url)
    for statement in write_attempts(None):
        with db.connect() as conn:
            with pytest.raises(DBAPIError, match="read-only transaction"):
                conn.execute(text(statement))
                conn.commit()
    with db.connect() as conn:
        assert conn.execute(text("SHOW TimeZone")).scalar() == "UTC"
    db.close()


def test_postgres_session_runs_without_jit(fresh_postgres_database):
    url = fresh_postgres_database()
    GatewayBuilder(url).close()
    db = open_database(url)
    with db.connect() as conn:
        assert conn.execute(text("SHOW jit")).scalar() == "off"
    db.close()


def test_postgres_session_groups_in_32mb_of_work_memory(fresh_postgres_database):
    url = fresh_postgres_database()
    GatewayBuilder(url).close()
    db = open_database(url)
    with db.connect() as conn:
        assert conn.execute(text("SHOW work_mem")).scalar() == "32MB"
    db.close()


def test_sqlite_sorter_may_use_helper_threads(tmp_path):
    url = f"sqlite:///{tmp_path}/g.sqlite3"
    GatewayBuilder(url).close()
    db = open_database(url)
    with db.connect() as conn:
        assert conn.execute(text("PRAGMA threads")).scalar() >= 1
    db.close()


def test_postgres_plain_driver_name_is_accepted(fresh_postgres_database):
    url = make_url(fresh_postgres_database())
    GatewayBuilder(url.render_as_string(hide_password=False)).close()
    db = open_database(url.set(drivername="postgresql").render_as_string(hide_password=False))
    assert db.dialect == "postgresql"
    db.close()


# --- router configuration ---------------------------------------------------------


def test_router_config_names_in_order_each_once(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o\n    litellm_params: {model: azure/gpt-4o}\n"
        "  - model_name: claude\n    model_info: {mode: chat}\n"
        "  - model_name: gpt-4o\n    litellm_params: {model: openai/gpt-4o}\n"
        "router_settings: {routing_strategy: simple-shuffle}\n"
    )
    assert load_router_config(path) == ("gpt-4o", "claude")


@pytest.mark.parametrize(
    "text, message",
    [
        ("model_list: [\n", "not valid YAML"),
        ("- a\n- b\n", "no top-level 'model_list'"),
        ("model_list: gpt-4o\n", "must be a list"),
        ("model_list:\n  - litellm_params: {model: x}\n", "entry 1 has no 'model_name'"),
        ("model_list:\n  - model_name: a\n  - model_name: 5\n", "entry 2 has no 'model_name'"),
    ],
)
def test_malformed_router_config(text, message):
    with pytest.raises(UsageError, match=message):
        parse_router_config(text)


def test_missing_router_config(tmp_path):
    with pytest.raises(UsageError, match="router config not found"):
        load_router_config(tmp_path / "nope.yaml")

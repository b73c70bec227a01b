"""The test infrastructure itself works: PostgreSQL server, fresh databases, Chromium."""

import sqlalchemy as sa

LIST_TABLES = sa.text(
    "SELECT table_schema || '.' || table_name FROM information_schema.tables "
    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
)


def test_postgres_server_answers(postgres_server):
    assert postgres_server.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_server)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version()")).scalar_one()
    finally:
        engine.dispose()
    assert version.startswith("PostgreSQL ")


def test_fresh_databases_are_distinct_and_empty(fresh_postgres_database):
    url_a = fresh_postgres_database()
    url_b = fresh_postgres_database("other")
    assert url_a != url_b

    engine_a = sa.create_engine(url_a)
    engine_b = sa.create_engine(url_b)
    try:
        with engine_a.begin() as a, engine_b.begin() as b:
            name_a = a.execute(sa.text("SELECT current_database()")).scalar_one()
            name_b = b.execute(sa.text("SELECT current_database()")).scalar_one()
            assert name_a != name_b
            assert name_a.startswith("t_") and name_b.startswith("other_")
            assert a.execute(LIST_TABLES).all() == []
            assert b.execute(LIST_TABLES).all() == []
            a.execute(sa.text("CREATE TABLE only_in_a (x int)"))
        with engine_a.connect() as a, engine_b.connect() as b:
            assert a.execute(LIST_TABLES).scalars().all() == ["public.only_in_a"]
            assert b.execute(LIST_TABLES).all() == []
    finally:
        engine_a.dispose()
        engine_b.dispose()


def test_browser_reads_heading(browser, test_output_dir):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto("data:text/html,<h1>hi</h1>")
        assert page.inner_text("h1") == "hi"
        page.screenshot(path=test_output_dir / "infrastructure-heading.png")
    finally:
        context.close()
    assert (test_output_dir / "infrastructure-heading.png").stat().st_size > 0

"""Health through the archive (issue 15; SPEC §5): every health figure read through the
archive equals the direct reading, and an archive made before the archive kept health
upgrades in place and says where it has none.

The property tests reuse tests/test_archive_equality.py's random gateways (tiny orgs,
row histories with late updates and late rows inside the settle horizon, windows and
zones), with a gateway overhead (`processing_time_ms`) on some rows, and compare
`compute_health` with and without the archive, gateway and archive each on SQLite and
PostgreSQL. The upgrade tests make an archive at revision 0001 with Alembic, fill it as
a sync of that revision left it, open it with this version (which migrates it) and
sync again.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from alembic import command
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from sqlalchemy import MetaData, create_engine, func, insert, select, update

from tests.test_archive_equality import (  # noqa: F401  (make_url: a fixture)
    BACKENDS,
    CONFIG,
    PROPERTY,
    Built,
    World,
    apply_late_changes,
    build,
    make_url,
    selection_for,
    windows,
    worlds,
)
from usage_lib import Selection, compute_usage, open_database
from usage_lib.core.health import HEADROOM_GATEWAY_ONLY_NOTICE, compute_health
from usage_lib.gateway.schema import management_request
from usage_lib.history import schema
from usage_lib.history.archive import HEALTH_FROM_NOTICE, open_archive
from usage_lib.history.store import _alembic_config, current_revision, open_store
from usage_lib.history.sync import sync as sync_usage
from usage_lib.settings import Settings

UTC = timezone.utc
#: Figures of `Health` compared as frames, and as plain values.
FRAMES = ("latency", "latency_by_model", "latency_over_time", "statuses", "failures_over_time",
          "failures_by_model", "processing", "headroom", "near_limit")
VALUES = ("in_flight", "oldest_in_flight", "tokens_unknown")


def sync(db, store, **options):
    """A sync that archives health (opt-in: `sync --health`)."""
    return sync_usage(db, store, health=True, **options)


def assert_same_health(direct, archived, context: str, frames: tuple[str, ...] = FRAMES) -> None:
    """Every health figure equal (notices may differ: the archive adds its own)."""
    try:
        for name in frames:
            mine, theirs = getattr(archived, name), getattr(direct, name)
            assert (mine is None) == (theirs is None), name
            if mine is not None:
                assert_frame_equal(mine, theirs, obj=name)
        assert [getattr(archived, name) for name in VALUES] == [getattr(direct, name) for name in VALUES]
    except AssertionError as exc:
        raise AssertionError(f"{context}\n{exc}") from None


def with_overhead(built: Built) -> None:
    """A gateway overhead on two rows of three (a time from the row's id)."""
    with built.builder.engine.begin() as conn:
        conn.execute(update(management_request).where(management_request.c.id % 3 != 0).values(
            processing_time_ms=(management_request.c.id * 37) % 400))


def check_health_windows(gateway_url: str, archive_url: str, built: Built, data, now: datetime, count: int) -> None:
    db = open_database(gateway_url)
    archive = open_archive(archive_url)
    try:
        for _ in range(count):
            choice = data.draw(windows(now, len(built.tokens)))
            viewer = data.draw(st.sampled_from(built.viewers))
            models = data.draw(st.sampled_from([CONFIG, CONFIG, None, ("claude",)]))
            selection = selection_for(built, choice)
            direct = compute_health(db, viewer, selection, models)
            archived = compute_health(db, viewer, selection, models, archive=archive)
            assert_same_health(direct, archived, f"viewer={viewer} models={models} {selection}")
    finally:
        archive.close()
        db.close()


def check_late_updates(make_url, gateway_backend: str, archive_backend: str, world: World, data) -> None:
    """Sync at now1, compare a few windows, make late changes inside the horizon, sync
    at now2 and compare more windows at now2."""
    gateway_url = make_url(gateway_backend, "gateway")
    archive_url = make_url(archive_backend, "archive")
    built = build(gateway_url, world)
    try:
        with_overhead(built)
        store = open_store(archive_url, writable=True)
        db = open_database(gateway_url)
        try:
            sync(db, store, now=world.now1, settle=world.settle)
            check_health_windows(gateway_url, archive_url, built, data, world.now1, 3)
            apply_late_changes(built, world)
            sync(db, store, now=world.now2, settle=world.settle)
        finally:
            db.close()
            store.close()
        check_health_windows(gateway_url, archive_url, built, data, world.now2, 12)
    finally:
        built.builder.close()


@pytest.mark.parametrize("gateway_backend, archive_backend", BACKENDS[:2])
@settings(PROPERTY, max_examples=max(1, PROPERTY.max_examples // 2))
@given(world=worlds(), data=st.data())
def test_archive_health_equals_direct_health_after_late_updates_within_the_horizon(
    make_url, gateway_backend, archive_backend, world, data
):
    check_late_updates(make_url, gateway_backend, archive_backend, world, data)


@pytest.mark.parametrize("gateway_backend, archive_backend", BACKENDS[2:])
@settings(PROPERTY, max_examples=1)
@given(world=worlds(), data=st.data())
def test_archive_health_equals_direct_health_with_gateway_and_archive_on_different_backends(
    make_url, gateway_backend, archive_backend, world, data
):
    check_late_updates(make_url, gateway_backend, archive_backend, world, data)


# --- an archive of revision 0001 ----------------------------------------------------------

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SETTLE = timedelta(hours=2)


def at(hour: int, minute: int = 0, day: int = 0) -> datetime:
    return datetime(2026, 11, 24 + day, hour, minute, tzinfo=UTC)


@pytest.fixture
def upgraded(make_url, gateway_db):
    """A gateway with requests from 06:00 to 13:50, an archive of revision 0001 synced
    at 10:00 (slices up to 08:00), then opened by this version and synced at 14:00
    (slices up to 12:00). Returns (gateway URL, archive URL)."""
    g = gateway_db()
    acme = g.org("Acme")
    root = g.user("root", role="admin", org=acme)
    ana = g.user("ana", "ana@example.org", org=acme)
    token, theirs = g.token(root, "main"), g.token(ana, "ana-key")
    for hour in range(6, 14):
        g.request(token, at(hour, 10), count=2, ms=100 * hour, status=200)
        g.request(theirs, at(hour, 20), count=1, ms=50, status=500, user_id="ana@example.org")
        g.request(token, at(hour, 40), count=1, status=None, ms=None, input_tokens=0, output_tokens=0)
    first = make_url(g.backend, "archive")
    old = make_url(g.backend, "archive")
    db = open_database(g.url)
    try:
        store = open_store(first, writable=True)
        try:
            sync(db, store, now=at(10), settle=SETTLE)
        finally:
            store.close()
        copy_as_revision_0001(first, old)
        store = open_store(old, writable=True)  # migrates to the head
        try:
            # No health until a sync with health: it starts at the watermark then.
            assert store.state().health_from is None
            sync(db, store, now=at(14), settle=SETTLE)
            assert store.state().health_from == int(at(8).timestamp())
        finally:
            store.close()
    finally:
        db.close()
    yield g.url, old
    g.close()


def copy_as_revision_0001(source_url: str, target_url: str) -> None:
    """Make `target_url` an archive of revision 0001 (Alembic) holding what a sync of
    that revision writes: every table of `source_url` it has, less the health."""
    engine = create_engine(target_url)
    try:
        config = _alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
        assert current_revision(engine) == "0001"
        old = MetaData()
        old.reflect(engine)
        assert "slice_health" not in old.tables and "health_from" not in old.tables["archive_state"].c
        source = open_store(source_url)
        try:
            with source.engine.connect() as reader, engine.begin() as writer:
                for name, table in old.tables.items():
                    if name == "alembic_version":
                        continue
                    rows = [{column: row[column] for column in table.c.keys()}
                            for row in reader.execute(select(schema.metadata.tables[name])).mappings()]
                    if rows:
                        writer.execute(insert(table), rows)
        finally:
            source.close()
    finally:
        engine.dispose()


def health(gateway_url: str, archive_url: str | None, viewer: str = "root", **selection):
    db = open_database(gateway_url)
    archive = open_archive(archive_url) if archive_url else None
    try:
        return compute_health(db, viewer, Selection(now=at(14), **selection), CONFIG, archive=archive)
    finally:
        if archive is not None:
            archive.close()
        db.close()


def test_an_archive_of_revision_0001_upgrades_in_place_and_keeps_its_usage(upgraded):
    gateway_url, archive_url = upgraded
    store = open_store(archive_url)
    try:
        assert current_revision(store.engine) == "0002"
        with store.engine.connect() as conn:
            health_slices = conn.execute(select(func.min(schema.slice_health.c.slice))).scalar()
            detail_slices = conn.execute(select(func.min(schema.slice_detail.c.slice))).scalar()
        assert store.state().watermark == int(at(12).timestamp())
    finally:
        store.close()
    # Slices synced before the upgrade have no health; those after have it.
    assert detail_slices == int(at(6).timestamp()) and health_slices == int(at(8).timestamp())
    db = open_database(gateway_url)
    archive = open_archive(archive_url)
    try:
        selection = Selection(now=at(14), start=at(6), end=at(14))
        direct = compute_usage(db, "root", selection, CONFIG)
        archived = compute_usage(db, "root", selection, CONFIG, archive=archive)
        assert archived.metrics == direct.metrics
        assert_frame_equal(archived.timeseries, direct.timeseries)
    finally:
        archive.close()
        db.close()


def test_health_over_slices_synced_before_the_upgrade_says_so_and_counts_nothing_there(upgraded):
    gateway_url, archive_url = upgraded
    direct = health(gateway_url, None, start=at(6), end=at(14))
    archived = health(gateway_url, archive_url, start=at(6), end=at(14))
    expected = HEALTH_FROM_NOTICE.format(start="2026-11-24 06:00", end="2026-11-24 08:00")
    assert expected in archived.notices
    assert archived.unrecorded == ((at(6), at(8)),)
    # 06:00-08:00 is a gap for health: no bucket there shows a measured 0 or anything.
    over_time = archived.failures_over_time.set_index("bucket")
    assert over_time.loc[pd.Timestamp(at(8)):, "requests"].tolist() == \
        direct.failures_over_time.set_index("bucket").loc[pd.Timestamp(at(8)):, "requests"].tolist()
    assert over_time.loc[:pd.Timestamp(at(7)), "requests"].tolist() == [0, 0]
    assert archived.statuses["requests"].sum() == direct.statuses["requests"].sum() - 2 * 4


def test_health_after_the_upgrade_equals_the_direct_health_with_no_notice(upgraded):
    gateway_url, archive_url = upgraded
    for viewer in ("root", "ana"):
        direct = health(gateway_url, None, viewer=viewer, start=at(8), end=at(14))
        archived = health(gateway_url, archive_url, viewer=viewer, start=at(8), end=at(14))
        assert_same_health(direct, archived, viewer)
        assert not any("No health figures recorded" in notice for notice in archived.notices)


# --- beyond the gateway's retention ---------------------------------------------------------


def test_health_beyond_retention_is_the_health_the_gateway_gave_before_it_deleted(gateway_db, make_url):
    """Figures of 06:00-10:00 read directly, then synced, then deleted from the gateway:
    the archive alone gives the same figures; a range starting inside a slice snaps to
    it with the usage notice."""
    g = gateway_db()
    acme = g.org("Acme")
    root = g.user("root", role="admin", org=acme)
    token = g.token(root, "main")
    g.request(token, at(6, 5), count=3, ms=120, processing_ms=7)
    g.request(token, at(7, 30), count=2, status=503, ms=900, model="claude")
    g.request(token, at(8, 15), count=1, status=None, ms=None)
    g.request(token, at(9, 59), count=4, ms=40, path="/v1/embeddings", model="embed-small",
              input_tokens=0, output_tokens=0)
    before = health(g.url, None, start=at(6), end=at(10), tz="Asia/Kolkata")
    archive_url = make_url(g.backend, "archive")
    db = open_database(g.url)
    store = open_store(archive_url, writable=True)
    try:
        sync(db, store, now=at(14), settle=SETTLE)
        with g.engine.begin() as conn:
            conn.execute(management_request.delete())
        sync(db, store, now=at(14, 1), settle=SETTLE)  # the gateway now holds nothing
    finally:
        store.close()
        db.close()
    after = health(g.url, archive_url, start=at(6), end=at(10), tz="Asia/Kolkata")
    # The headroom (per-minute peaks) comes from the gateway alone, and says so.
    assert_same_health(before, after, "after the gateway deleted", FRAMES[:-2])
    assert len(before.headroom) == 1 and after.headroom.empty
    assert HEADROOM_GATEWAY_ONLY_NOTICE in after.notices and HEADROOM_GATEWAY_ONLY_NOTICE not in before.notices
    assert (after.in_flight, after.oldest_in_flight) == (1, at(8, 15))
    assert after.processing.loc["completion", "requests"] == 3
    snapped = health(g.url, archive_url, start=at(6, 20), end=at(10))
    assert any("shown from 2026-11-24 06:15" in notice for notice in snapped.notices), snapped.notices


def test_health_through_the_archive_sends_the_gateway_as_many_statements(upgraded):
    """Viewer, catalogue, health (and headroom for admins): the archive's statements go
    to the archive."""
    gateway_url, archive_url = upgraded
    db = open_database(gateway_url)
    archive = open_archive(archive_url)
    try:
        for viewer, expected in (("ana", 3), ("root", 4)):
            db.statements.count = 0
            compute_health(db, viewer, Selection(now=at(14), span="1d"), CONFIG, archive=archive)
            assert db.statements.count == expected, viewer
    finally:
        archive.close()
        db.close()


def test_settings_read_health_through_their_archive(upgraded):
    gateway_url, archive_url = upgraded
    settings = Settings(db_url=gateway_url, viewer="root", archive_url=archive_url)
    through = settings.compute_health(Selection(now=at(14), start=at(6), end=at(14)))
    assert through.unrecorded == ((at(6), at(8)),)
    direct = Settings(db_url=gateway_url, viewer="root").compute_health(Selection(now=at(14), start=at(6), end=at(14)))
    assert direct.unrecorded == () and direct.statuses["requests"].sum() == through.statuses["requests"].sum() + 8


# --- health is opt-in -------------------------------------------------------------------------


def health_rows(archive_url: str) -> int:
    store = open_store(archive_url)
    try:
        with store.engine.connect() as conn:
            return sum(conn.execute(select(func.count()).select_from(table)).scalar_one()
                       for table in (schema.slice_health, schema.slice_processing))
    finally:
        store.close()


@pytest.fixture
def plain(make_url, gateway_db):
    """A gateway with requests from 06:00 to 13:50 (some in flight, some with overhead)
    and an archive synced at 14:00 without health. Returns (gateway, archive URL)."""
    g = gateway_db()
    acme = g.org("Acme")
    root = g.user("root", role="admin", org=acme)
    ana = g.user("ana", "ana@example.org", org=acme)
    token, theirs = g.token(root, "main"), g.token(ana, "ana-key")
    for hour in range(6, 14):
        g.request(token, at(hour, 10), count=2, ms=100 * hour, status=200, processing_ms=hour)
        g.request(theirs, at(hour, 20), count=1, ms=50, status=500, user_id="ana@example.org")
        g.request(token, at(hour, 40), count=1, status=None, ms=None, input_tokens=0, output_tokens=0)
    archive_url = make_url(g.backend, "archive")
    db = open_database(g.url)
    store = open_store(archive_url, writable=True)
    try:
        sync_usage(db, store, now=at(14), settle=SETTLE)
        assert store.state().health_from is None
    finally:
        store.close()
        db.close()
    yield g, archive_url
    g.close()


def test_a_default_sync_writes_no_health_and_a_sync_with_health_keeps_it_from_then_on(plain):
    g, archive_url = plain
    assert health_rows(archive_url) == 0
    # The usage is all there: 8 hours of 4 requests up to the watermark (12:00).
    store = open_store(archive_url)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(func.sum(schema.slice_detail.c.requests))).scalar_one() == 6 * 4
    finally:
        store.close()
    db = open_database(g.url)
    store = open_store(archive_url, writable=True)
    try:
        sync(db, store, now=at(15), settle=SETTLE)  # with health: 12:00-13:00
        assert store.state().health_from == int(at(12).timestamp())
        written = health_rows(archive_url)
        assert written > 0
        sync_usage(db, store, now=at(16), settle=SETTLE)  # without: still health (13:00-14:00)
    finally:
        store.close()
        db.close()
    assert health_rows(archive_url) > written
    # Health before it started is a gap for health, said so; after it, the direct figures.
    archived = health(g.url, archive_url, start=at(6), end=at(14))
    expected = HEALTH_FROM_NOTICE.format(start="2026-11-24 06:00", end="2026-11-24 12:00")
    assert expected in archived.notices and archived.unrecorded == ((at(6), at(12)),)
    assert_same_health(health(g.url, None, start=at(12), end=at(14)),
                       health(g.url, archive_url, start=at(12), end=at(14)), "after health started")


def test_health_through_an_archive_without_health_is_the_direct_health_with_no_notice(plain):
    g, archive_url = plain
    for viewer, selection in (("root", {"start": at(6), "end": at(14)}), ("ana", {"span": "1d"}),
                              ("root", {"span": "1d", "tz": "Asia/Kolkata"})):
        direct = health(g.url, None, viewer=viewer, **selection)
        archived = health(g.url, archive_url, viewer=viewer, **selection)
        assert_same_health(direct, archived, f"{viewer} {selection}")
        assert archived.notices == direct.notices and archived.unrecorded == ()

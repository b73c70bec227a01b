"""SPEC §5: every figure read through the archive equals the direct reading, exactly.

Property-based (Hypothesis): each example builds one tiny random gateway (two orgs, a
few users of every role, teams, service accounts, tokens) with a random request history
over about three days, syncs it into an archive, makes late updates and late rows inside
the settle horizon, syncs again, and then compares many random windows (presets and
custom ranges, zones with odd offsets and DST changes, every viewer, org and token
choice, with and without a router configuration) read with and without the archive.
The direct reading (`compute_usage` without an archive) is the reference; it is tested
against hand-computed figures elsewhere (tests/test_figures.py). One hand-computed test
here checks figures that only the archive can answer.

Gateway and archive each run on SQLite and PostgreSQL (all four pairs). The examples
are few and each checks many windows: building a gateway costs far more than a refresh.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from sqlalchemy import delete, select, update

from tests.support.gateway import GatewayBuilder, sqlite_url
from usage_lib import Selection, compute_usage, open_database
from usage_lib.gateway.schema import management_request
from usage_lib.history import schema as archive_schema
from usage_lib.history.archive import open_archive
from usage_lib.history.slices import floor_to
from usage_lib.history.store import open_store
from usage_lib.history.sync import sync

UTC = timezone.utc
SLICE = timedelta(minutes=15)
CONFIG = ("gpt-4o", "claude", "embed-small", "never-used")
#: Models on request rows: configured ones, NULL, empty, one not configured, a miscased one.
ROW_MODELS = ("gpt-4o", "gpt-4o", "claude", "embed-small", None, "", "not-in-config", "GPT-4o")
PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/V1/Chat/Completions",
         "/v1/EMBEDDINGS", "/v1/responses", "/v1/models")
STATUSES = (200, 200, 201, None, 400, 404, 429, 500, 503, 399)
ZONES = ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "Europe/Vienna", "America/St_Johns")
#: Base instants: an ordinary day, and two days after Vienna's DST changes (autumn
#: 2026-10-25, spring 2026-03-29) so that three days of history cross them.
BASES = (
    datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
    datetime(2026, 10, 26, 6, 0, tzinfo=UTC),
    datetime(2026, 3, 30, 20, 0, tzinfo=UTC),
)
HISTORY = timedelta(days=3)
TEAMS = (("ML", 0), ("Ops", 0), ("Bees", 1))  # (name, org index)

PROPERTY = settings(
    max_examples=int(os.environ.get("ARCHIVE_EQUALITY_EXAMPLES", "4")),
    deadline=None,
    # Reproducible by default; ARCHIVE_EQUALITY_RANDOM=1 (with ARCHIVE_EQUALITY_EXAMPLES=N)
    # explores new examples.
    derandomize=not os.environ.get("ARCHIVE_EQUALITY_RANDOM"),
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    # No shrinking by default: a failure shrinks for minutes (every step builds a
    # gateway), far beyond the file's time budget. To shrink a failure, run with
    # ARCHIVE_EQUALITY_SHRINK=1.
    phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if os.environ.get("ARCHIVE_EQUALITY_SHRINK") else [])],
)


# --- random gateways --------------------------------------------------------------------


@dataclass
class Person:
    name: str
    email: str
    role: str | None
    org: int | None  # org index, None: no profile
    teams: dict[int, bool]  # team index -> is team admin


@dataclass
class Row:
    token: int  # index into World.tokens
    at: datetime
    model: str | None
    path: str
    status: int | None
    ms: int | None
    input_tokens: int
    output_tokens: int
    user_id: str
    long_form: bool


@dataclass
class World:
    """One random gateway: people, service accounts, tokens, a history, late changes."""

    now1: datetime
    now2: datetime
    settle: timedelta
    people: list[Person]
    service_accounts: list[int]  # team index of each
    tokens: list[tuple[int, int | None, str]]  # (owner index, service account index, name)
    rows: list[Row]
    #: (row index, status, ms, input tokens, output tokens): applied after the first sync.
    updates: list[tuple[int, int | None, int | None, int, int]] = field(default_factory=list)
    late_rows: list[Row] = field(default_factory=list)

    @property
    def horizon(self) -> datetime:
        """floor15(now1 - settle): rows from here on were unsettled at the first sync."""
        return _floor15(self.now1 - self.settle)


def _floor15(moment: datetime) -> datetime:
    return datetime.fromtimestamp(floor_to(moment.timestamp()), UTC)


@st.composite
def people(draw) -> list[Person]:
    out = [Person("root", "root@example.org", "admin", 0, {})]  # someone sees everything
    for index in range(draw(st.integers(2, 4))):
        name = f"u{index}"
        org = draw(st.sampled_from([0, 0, 1, 1, None]))
        role = draw(st.sampled_from(["admin", "org-admin", "user", "user", None]))
        email = draw(st.sampled_from([f"{name}@example.org"] * 4 + [""]))
        teams = {}
        if org is not None:
            for team, (_, team_org) in enumerate(TEAMS):
                if team_org == org and draw(st.booleans()):
                    teams[team] = draw(st.booleans())
        out.append(Person(name, email, role, org, teams))
    return out


def _timestamp(draw, low: datetime, high: datetime) -> datetime:
    """A time in [low, high]: on a slice boundary, a whole second, or with microseconds."""
    kind = draw(st.sampled_from(["boundary", "boundary", "second", "micro", "micro", "just-before"]))
    if kind in ("boundary", "just-before"):
        first = int(-(-low.timestamp() // 900))
        last = int(high.timestamp() // 900)
        if first > last:
            kind = "micro"
        else:
            moment = datetime.fromtimestamp(draw(st.integers(first, last)) * 900, UTC)
            if kind == "just-before" and moment - timedelta(microseconds=1) >= low:
                return moment - timedelta(microseconds=1)
            return moment
    seconds = draw(st.integers(0, int((high - low).total_seconds())))
    moment = low + timedelta(seconds=seconds)
    if kind == "micro":
        moment = min(high, moment + timedelta(microseconds=draw(st.integers(1, 999_999))))
    return moment


def _row(draw, world_tokens: int, user_ids: list[str], at: datetime) -> Row:
    return Row(
        token=draw(st.integers(0, world_tokens - 1)),
        at=at,
        model=draw(st.sampled_from(ROW_MODELS)),
        path=draw(st.sampled_from(PATHS)),
        status=draw(st.sampled_from(STATUSES)),
        ms=draw(st.one_of(st.none(), st.integers(0, 5000))),
        input_tokens=draw(st.integers(0, 300)),
        output_tokens=draw(st.integers(0, 300)),
        user_id=draw(st.sampled_from(user_ids)),
        long_form=draw(st.booleans()),
    )


@st.composite
def worlds(draw, late: bool = True) -> World:
    base = draw(st.sampled_from(BASES))
    now1 = base + timedelta(minutes=draw(st.integers(0, 59)),
                            seconds=draw(st.sampled_from([0, 0, 17, 59])),
                            microseconds=draw(st.sampled_from([0, 0, 250_000])))
    now2 = now1 + (timedelta(minutes=draw(st.integers(0, 200))) if late else timedelta(0))
    settle = draw(st.sampled_from([timedelta(hours=2), timedelta(minutes=45)]))
    crowd = draw(people())
    service_accounts = draw(st.lists(st.integers(0, len(TEAMS) - 1), max_size=2))
    tokens = []
    for _ in range(draw(st.integers(2, 5))):
        owner = draw(st.integers(0, len(crowd) - 1))
        sa = draw(st.one_of(st.none(), st.integers(0, len(service_accounts) - 1))) if service_accounts else None
        tokens.append((owner, sa, draw(st.sampled_from(["main", "main", "batch", "ci"]))))
    user_ids = ["", "", "", "someone", *(p.email for p in crowd if p.email),
                *(p.email.capitalize() for p in crowd[:2] if p.email)]
    rows = []
    # Three days before now1, or (a young gateway) less than the settle horizon; a few
    # rows just after now1 (clock skew).
    history = draw(st.sampled_from([HISTORY, HISTORY, HISTORY, timedelta(minutes=100)]))
    for _ in range(draw(st.integers(8, 40))):
        at = _timestamp(draw, now1 - history, now1 + timedelta(minutes=10))
        rows.append(_row(draw, len(tokens), user_ids, at))
    world = World(now1, now2, settle, crowd, service_accounts, tokens, rows)
    if late:
        # Late changes: only rows stamped after the first sync's horizon.
        recent = [i for i, row in enumerate(rows) if row.at >= world.horizon]
        if recent:
            for index in draw(st.lists(st.sampled_from(recent), max_size=6)):
                world.updates.append((index, draw(st.sampled_from(STATUSES)), draw(st.one_of(st.none(), st.integers(0, 9000))),
                                      draw(st.integers(0, 5000)), draw(st.integers(0, 5000))))
        for _ in range(draw(st.integers(1, 8))):
            at = _timestamp(draw, world.horizon, max(now2, world.horizon + timedelta(minutes=1)))
            world.late_rows.append(_row(draw, len(tokens), user_ids, at))
    return world


@dataclass
class Built:
    builder: GatewayBuilder
    orgs: list[int]
    users: list[int]
    tokens: list[int]
    viewers: list[str]  # usernames that may look (a role and a profile)
    row_ids: list[int]


def build(url: str, world: World) -> Built:
    g = GatewayBuilder(url)
    orgs = [g.org("Acme"), g.org("Beta")]
    teams = [g.team(orgs[org], name) for name, org in TEAMS]
    users = [
        g.user(p.name, p.email, role=p.role, org=None if p.org is None else orgs[p.org],
               teams={teams[t]: admin for t, admin in p.teams.items()})
        for p in world.people
    ]
    sas = [g.service_account(teams[team], f"bot{i}") for i, team in enumerate(world.service_accounts)]
    tokens = [g.token(users[owner], name, None if sa is None else sas[sa]) for owner, sa, name in world.tokens]
    built = Built(g, orgs, users, tokens, [p.name for p in world.people if p.role and p.org is not None], [])
    for row in world.rows:
        built.row_ids.append(insert_row(built, row))
    return built


def insert_row(built: Built, row: Row) -> int:
    g = built.builder
    g.request(built.tokens[row.token], row.at, model=row.model, path=row.path, status=row.status, ms=row.ms,
              input_tokens=row.input_tokens, output_tokens=row.output_tokens, user_id=row.user_id,
              long_form=row.long_form)
    with g.engine.connect() as conn:
        return conn.execute(select(management_request.c.id).order_by(management_request.c.id.desc())).scalar()


def apply_late_changes(built: Built, world: World) -> None:
    with built.builder.engine.begin() as conn:
        for index, status, ms, input_tokens, output_tokens in world.updates:
            conn.execute(update(management_request).where(management_request.c.id == built.row_ids[index]).values(
                status_code=status, response_time_ms=ms, input_tokens=input_tokens, output_tokens=output_tokens))
    for row in world.late_rows:
        insert_row(built, row)


# --- random windows ---------------------------------------------------------------------


@st.composite
def windows(draw, now: datetime, tokens: int) -> dict:
    """Selection arguments (without viewer and models) of one window ending by `now`."""
    choice = {
        "tz": draw(st.sampled_from(ZONES)),
        "top": draw(st.sampled_from([10, 25, 100])),
        "org": draw(st.sampled_from([None, None, "all", "all", 0, 1, "no-such-org"])),
        "token": draw(st.one_of(st.none(), st.none(), st.integers(0, tokens - 1))),
        "now": now,
    }
    kind = draw(st.sampled_from(["preset", "preset", "minutes", "hours", "days", "hours"]))
    if kind == "preset":
        choice["span"] = draw(st.sampled_from(["1h", "1d", "1d", "1w", "1m"]))
        return choice
    longest = {"minutes": timedelta(hours=2), "hours": timedelta(days=2), "days": HISTORY + timedelta(hours=6)}[kind]
    shortest = {"minutes": timedelta(minutes=1), "hours": timedelta(hours=2, minutes=1), "days": timedelta(days=2, minutes=1)}[kind]
    earliest = now - HISTORY - timedelta(hours=6)
    if draw(st.booleans()):  # ends on a slice boundary (often the whole range aligned)
        end = _floor15(now) - SLICE * draw(st.integers(0, 12))
        length = SLICE * draw(st.integers(-(-int(shortest.total_seconds()) // 900), int(longest.total_seconds()) // 900))
        if draw(st.booleans()):
            length += timedelta(seconds=draw(st.integers(0, 899)), microseconds=draw(st.sampled_from([0, 1, 500_000])))
    else:
        end = now - timedelta(seconds=draw(st.integers(0, 6 * 3600)), microseconds=draw(st.sampled_from([0, 123_456])))
        low, high = int(shortest.total_seconds()), int(longest.total_seconds())
        length = timedelta(seconds=draw(st.integers(low, high)))
    length = min(max(length, shortest), longest)
    start = max(end - length, earliest)
    if end - start < timedelta(minutes=1):
        start = end - timedelta(minutes=1)
    choice["start"], choice["end"] = start, end
    return choice


def selection_for(built: Built, choice: dict) -> Selection:
    choice = dict(choice)
    if isinstance(choice["org"], int):
        choice["org"] = built.orgs[choice["org"]]
    if choice["token"] is not None:
        choice["token"] = built.tokens[choice["token"]]
    return Selection(**choice)


# --- comparing ----------------------------------------------------------------------------


def _sorted_groups(groups: pd.DataFrame) -> pd.DataFrame:
    return groups.sort_values(["model", "key"], kind="stable").reset_index(drop=True)


def assert_same_figures(direct, archived, context: str) -> None:
    """Every figure equal (notices may differ: the archive adds its own)."""
    try:
        assert archived.top_kind == direct.top_kind
        assert archived.metrics == direct.metrics
        assert_frame_equal(archived.timeseries, direct.timeseries)
        assert_frame_equal(archived.models, direct.models)
        assert_frame_equal(archived.top, direct.top)
        assert_frame_equal(_sorted_groups(archived.groups), _sorted_groups(direct.groups))
    except AssertionError as exc:
        raise AssertionError(f"{context}\ndirect:   {direct.metrics}\narchived: {archived.metrics}\n{exc}") from None


def check_windows(gateway_url: str, archive_url: str, built: Built, data, now: datetime, count: int) -> None:
    db = open_database(gateway_url)
    archive = open_archive(archive_url)
    try:
        for _ in range(count):
            choice = data.draw(windows(now, len(built.tokens)))
            viewer = data.draw(st.sampled_from(built.viewers))
            models = data.draw(st.sampled_from([CONFIG, CONFIG, None, ("claude",)]))
            selection = selection_for(built, choice)
            direct = compute_usage(db, viewer, selection, models)
            archived = compute_usage(db, viewer, selection, models, archive=archive)
            assert_same_figures(direct, archived, f"viewer={viewer} models={models} {selection}")
    finally:
        archive.close()
        db.close()


def dump(archive_url: str) -> dict[str, list[tuple]]:
    """Every row of every archive table, sorted (None first)."""
    store = open_store(archive_url)
    try:
        with store.engine.connect() as conn:
            return {
                table.name: sorted((tuple(row) for row in conn.execute(select(table))),
                                   key=lambda row: [(value is not None, value) for value in row])
                for table in archive_schema.metadata.sorted_tables
            }
    finally:
        store.close()


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def make_url(request, tmp_path):
    """`make(backend, what) -> url`: a new empty database (SQLite file or PostgreSQL).

    SQLite files go to /dev/shm when there is one: every little insert of the builder
    commits, and fsyncs on a disk cost most of the file's time budget."""
    counter = itertools.count()
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="archive-equality-", dir=shm)) if shm.is_dir() else tmp_path

    def make(backend: str, what: str) -> str:
        if backend == "sqlite":
            return sqlite_url(folder / f"{what}{next(counter)}.sqlite3")
        return request.getfixturevalue("fresh_postgres_database")(what)

    yield make
    if folder != tmp_path:
        shutil.rmtree(folder, ignore_errors=True)


BACKENDS = [
    pytest.param("sqlite", "sqlite", id="gateway_sqlite-archive_sqlite"),
    pytest.param("postgresql", "postgresql", id="gateway_pg-archive_pg"),
    pytest.param("sqlite", "postgresql", id="gateway_sqlite-archive_pg"),
    pytest.param("postgresql", "sqlite", id="gateway_pg-archive_sqlite"),
]


# --- the properties -----------------------------------------------------------------------


def check_late_updates(make_url, gateway_backend: str, archive_backend: str, world: World, data) -> None:
    """Sync at now1, compare a few windows, make late changes inside the horizon, sync
    at now2 and compare many windows at now2."""
    gateway_url = make_url(gateway_backend, "gateway")
    archive_url = make_url(archive_backend, "archive")
    built = build(gateway_url, world)
    try:
        store = open_store(archive_url, writable=True)
        try:
            db = open_database(gateway_url)
            try:
                sync(db, store, now=world.now1, settle=world.settle)
                check_windows(gateway_url, archive_url, built, data, world.now1, 4)
                apply_late_changes(built, world)
                sync(db, store, now=world.now2, settle=world.settle)
            finally:
                db.close()
        finally:
            store.close()
        check_windows(gateway_url, archive_url, built, data, world.now2, 10)
    finally:
        built.builder.close()


@pytest.mark.parametrize("gateway_backend, archive_backend", BACKENDS[:2])
@PROPERTY
@given(world=worlds(), data=st.data())
def test_archive_figures_equal_direct_figures_after_late_updates_within_the_horizon(
    make_url, gateway_backend, archive_backend, world, data
):
    check_late_updates(make_url, gateway_backend, archive_backend, world, data)


@pytest.mark.parametrize("gateway_backend, archive_backend", BACKENDS[2:])
@settings(PROPERTY, max_examples=max(1, PROPERTY.max_examples // 2))
@given(world=worlds(), data=st.data())
def test_archive_figures_equal_direct_figures_with_gateway_and_archive_on_different_backends(
    make_url, gateway_backend, archive_backend, world, data
):
    check_late_updates(make_url, gateway_backend, archive_backend, world, data)


@pytest.mark.parametrize("gateway_backend, archive_backend", BACKENDS[:2])
@PROPERTY
@given(world=worlds(late=False))
def test_a_second_sync_at_the_same_now_changes_nothing_in_the_archive(make_url, gateway_backend, archive_backend, world):
    gateway_url = make_url(gateway_backend, "gateway")
    archive_url = make_url(archive_backend, "archive")
    built = build(gateway_url, world)
    try:
        db = open_database(gateway_url)
        store = open_store(archive_url, writable=True)
        try:
            sync(db, store, now=world.now1, settle=world.settle)
            before = dump(archive_url)
            sync(db, store, now=world.now1, settle=world.settle)
            assert dump(archive_url) == before
        finally:
            store.close()
            db.close()
    finally:
        built.builder.close()


# --- by hand ------------------------------------------------------------------------------

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def total_after_sync(db, store, archive_url: str, later: datetime, **options) -> int:
    """Sync at `later`, then the root's total requests at `later` through the archive."""
    sync(db, store, now=later, **options)
    archive = open_archive(archive_url)
    try:
        return compute_usage(db, "root", Selection(now=later), CONFIG, archive=archive).metrics.total_requests
    finally:
        archive.close()


@pytest.mark.parametrize("archive_backend", ["sqlite", "postgresql"])
def test_a_late_row_older_than_the_gateways_first_row_but_within_the_horizon_is_not_lost(
    make_url, gateway_db, archive_backend
):
    """A young gateway (first request 30 minutes ago): the first sync's horizon is 10:00,
    so a row stamped 10:30 that commits after it must still reach the archive."""
    g = gateway_db()
    root = g.user("root", role="admin", org=g.org("Acme"))
    token = g.token(root, "main")
    g.request(token, NOW - timedelta(minutes=30), count=1)
    archive_url = make_url(archive_backend, "archive")
    db = open_database(g.url)
    store = open_store(archive_url, writable=True)
    try:
        assert sync(db, store, now=NOW, settle=timedelta(hours=2)).watermark <= datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
        g.request(token, NOW - timedelta(minutes=90), count=2)  # 10:30: after the horizon
        later = NOW + timedelta(hours=3)
        assert total_after_sync(db, store, archive_url, later, settle=timedelta(hours=2)) == 3
    finally:
        store.close()
        db.close()


@pytest.mark.parametrize("archive_backend", ["sqlite", "postgresql"])
def test_a_sync_never_moves_the_watermark_past_its_horizon_after_a_quiet_gateway(make_url, gateway_db, archive_backend):
    """The archive's first sync saw an empty gateway; the next one (horizon 11:00) sees
    only a request stamped 12:50: a row stamped 11:30 that commits later is not lost."""
    g = gateway_db()
    root = g.user("root", role="admin", org=g.org("Acme"))
    token = g.token(root, "main")
    archive_url = make_url(archive_backend, "archive")
    db = open_database(g.url)
    store = open_store(archive_url, writable=True)
    try:
        sync(db, store, now=NOW)
        g.request(token, NOW + timedelta(minutes=50), count=1)
        assert sync(db, store, now=NOW + timedelta(hours=1)).watermark <= datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
        g.request(token, NOW - timedelta(minutes=30), count=2)  # 11:30: after the horizon
        later = NOW + timedelta(hours=5)
        assert total_after_sync(db, store, archive_url, later) == 3
    finally:
        store.close()
        db.close()


@pytest.mark.parametrize("archive_backend", ["sqlite", "postgresql"])
def test_window_wholly_in_the_archive_counts_each_slice_by_hand_even_after_the_gateway_forgot(
    make_url, gateway_db, archive_backend
):
    g = gateway_db()
    acme = g.org("Acme")
    root = g.user("root", role="admin", org=acme)
    token = g.token(root, "main")
    at = lambda h, m, s=0, us=0: datetime(2026, 11, 24, h, m, s, us, tzinfo=UTC)  # noqa: E731
    g.request(token, at(6, 30), count=16)                                 # before the window
    g.request(token, at(8, 0), count=1, status=500, ms=100)               # slice 08:00
    g.request(token, at(8, 14, 59, 999_999), count=2, ms=200)              # slice 08:00
    g.request(token, at(8, 15), count=4, long_form=True, path="/v1/embeddings", ms=40)  # slice 08:15
    g.request(token, at(9, 59, 59), count=8, status=None, ms=None, model="claude")      # slice 09:45
    g.request(token, at(10, 0), count=32)                                 # the window's end: out
    archive_url = make_url(archive_backend, "archive")
    db = open_database(g.url)
    store = open_store(archive_url, writable=True)
    try:
        result = sync(db, store, now=NOW, settle=timedelta(hours=2))
    finally:
        store.close()
    assert result.watermark == at(10, 0)
    # The gateway forgets the window's rows: what follows can only come from the archive.
    with g.engine.begin() as conn:
        conn.execute(delete(management_request).where(management_request.c.id.between(17, 31)))  # 1+2+4+8 rows
    archive = open_archive(archive_url)
    try:
        def read(tz: str) -> object:
            return compute_usage(db, "root", Selection(now=NOW, tz=tz, start=at(7, 0), end=at(10, 0)), CONFIG,
                                 archive=archive)

        utc = read("UTC")
        assert utc.metrics.as_dict() == {
            "total_requests": 15, "failed_requests": 1,
            # completions: 1 x 100 ms and 2 x 200 ms; embeddings: 4 x 40 ms; 8 without a time.
            "avg_response_ms_completion": 500 / 3, "avg_response_ms_embedding": 40.0,
            "input_tokens": 150, "output_tokens": 75, "total_tokens": 225,
        }
        assert list(utc.timeseries["requests"]) == [0, 7, 8]               # 07:00, 08:00, 09:00
        assert list(zip(utc.models["model"], utc.models["requests"])) == [
            ("claude", 8), ("gpt-4o", 7), ("embed-small", 0), ("never-used", 0)]
        assert list(utc.top["requests"]) == [15] and list(utc.top["id"]) == [token]
        # Kathmandu (+5:45): local hours end at :15 UTC; 08:00-08:15 and 08:15 part ways.
        kathmandu = read("Asia/Kathmandu")
        assert [b.strftime("%H:%M") for b in kathmandu.timeseries["bucket"]] == ["12:00", "13:00", "14:00", "15:00"]
        assert list(kathmandu.timeseries["requests"]) == [0, 3, 4, 8]
        assert kathmandu.metrics == utc.metrics
        # The direct path sees what the gateway still holds: nothing in the window.
        assert compute_usage(db, "root", Selection(now=NOW, start=at(7, 0), end=at(10, 0)), CONFIG).metrics.total_requests == 0
    finally:
        archive.close()
        db.close()

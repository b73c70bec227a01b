"""The usage archive (docs/history.md, SPEC §5): `sync` writing settled 15-minute slices,
and `compute_usage(..., archive=...)` reading them, on SQLite and PostgreSQL.

Each test builds a tiny gateway by hand (`GatewayBuilder`); the archive lives on the
same backend as the gateway, and tests where the backend matters run on both (the
`gateway_db` fixture). Expected figures are worked out in the comments, or are the
direct reading of the gateway taken before anything was deleted. Times are UTC; `DAY` is
the day most tests live in. A sync in another process (killed part-way, meeting the
gateway's retention job, or holding the writer lock) runs `slow_sync` or a few lines of
the library with `python -c`, or forked from one that did.
"""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, delete, func, select, text, update

from tests.support import REPO_ROOT
from tests.support.archive import SLOW_SYNC, dump
from tests.support.gateway import GatewayBuilder, django_text
from usage_lib import Selection, compute_usage, open_database
from usage_lib.errors import UsageError
from usage_lib.core.usage import PREVIOUS_PARTIAL_NOTICE
from usage_lib.gateway import schema as gateway_schema
from usage_lib.history import schema
from usage_lib.history.archive import open_archive
from usage_lib.history.store import open_store, writer_lock
from usage_lib.history.slices import DAY as DAY_SECONDS, HOUR, SLICE, floor_to
from usage_lib.history.sync import SLICE_TABLES, sync

UTC = timezone.utc
CONFIG = ("gpt-4o", "claude", "embed-small")
SETTLE = timedelta(hours=2)
DAY = datetime(2026, 11, 24, tzinfo=UTC)


def at(clock: str, day: datetime = DAY) -> datetime:
    """`at("10:30")`: that time of `day` (UTC); seconds and microseconds allowed."""
    parts = clock.split(":")
    seconds = float(parts[2]) if len(parts) > 2 else 0.0
    return day + timedelta(hours=int(parts[0]), minutes=int(parts[1]), seconds=seconds)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


# --- fixtures and helpers ------------------------------------------------------------


def admin_with_two_tokens(g) -> dict[str, int]:
    """Acme, with one global admin (root) who owns two tokens, A and B."""
    acme = g.org("Acme")
    root = g.user("root", role="admin", org=acme)
    return {"acme": acme, "root": root, "A": g.token(root, "A"), "B": g.token(root, "B")}


@pytest.fixture
def gateway(gateway_db, new_archive):
    """(builder, archive URL on the same backend, ids): `admin_with_two_tokens`."""
    g = gateway_db()
    return g, new_archive(g.backend), admin_with_two_tokens(g)


@pytest.fixture
def sqlite_gateway(tmp_path, new_archive):
    """`gateway` on SQLite only, for what does not depend on the backend."""
    g = GatewayBuilder(f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    yield g, new_archive("sqlite"), admin_with_two_tokens(g)
    g.close()


def run_sync(gateway_url: str, archive_url: str, now: datetime | list[datetime], **options):
    """One sync at `now`, or one after the other at each of a list of times (the last
    result)."""
    db = open_database(gateway_url)
    store = open_store(archive_url, writable=True)
    options.setdefault("settle", SETTLE)
    try:
        for moment in now if isinstance(now, list) else [now]:
            result = sync(db, store, now=moment, **options)
        return result
    finally:
        store.close()
        db.close()


def without_synced_at(tables: dict) -> dict:
    """A dump with the state's `synced_at` (the last run that wrote) left out."""
    columns = [column.name for column in schema.state.columns]
    position = columns.index("synced_at")
    return {**tables, "archive_state": [row[:position] + row[position + 1:] for row in tables["archive_state"]]}


def read(archive_url: str, statement) -> list[tuple]:
    store = open_store(archive_url)
    try:
        with store.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(statement)]
    finally:
        store.close()


def usage(gateway_url: str, viewer: str = "root", archive_url: str | None = None, compare: bool = True, **selection):
    """compute_usage for `viewer`, directly or through the archive."""
    db = open_database(gateway_url)
    archive = open_archive(archive_url) if archive_url else None
    try:
        return compute_usage(db, viewer, Selection(**selection), models=CONFIG, archive=archive, compare=compare)
    finally:
        if archive is not None:
            archive.close()
        db.close()


def figures(u) -> dict:
    """Every figure of a refresh (the JSON report without its notices) and its groups."""
    report = {key: value for key, value in u.to_json().items() if key != "notices"}
    groups = [tuple(v.item() if hasattr(v, "item") else v for v in row) for row in u.groups.itertuples(index=False)]
    return {**report, "groups": sorted(groups, key=repr)}


def slice_rows(archive_url: str, table, *columns) -> dict[tuple, int]:
    """{(slice as "HH:MM", token, model, *columns): requests} of a slice table."""
    rows = read(archive_url, select(table.c.slice, table.c.token_id, table.c.model,
                                    *(table.c[c] for c in columns), table.c.requests))
    return {(datetime.fromtimestamp(r[0], UTC).strftime("%H:%M"), *r[1:-1]): r[-1] for r in rows}


# --- 1. a first sync writes exactly the settled slices ---------------------------------


def add_first_day(g, ids) -> None:
    """Requests around the settle horizon of now = 12:40 (settled: before 10:30).

        09:00:00            A gpt-4o  1
        09:14:59.999999     A gpt-4o  2                 (slice 09:00)
        09:15:00            A gpt-4o  4, user_id "u@x"  (slice 09:15; SQLite: "...:00.000000")
        09:20               B claude  8
        10:29:59.999999     B gpt-4o 16, status 500     (slice 10:15, the last settled)
        10:30:00            A gpt-4o 32                 (slice 10:30: not settled)
        12:39               A gpt-4o 64
    """
    g.request(ids["A"], at("09:00"), count=1)
    g.request(ids["A"], at("09:14:59.999999"), count=2)
    g.request(ids["A"], at("09:15"), count=4, user_id="u@x", long_form=True)
    g.request(ids["B"], at("09:20"), count=8, model="claude")
    g.request(ids["B"], at("10:29:59.999999"), count=16, status=500)
    g.request(ids["A"], at("10:30"), count=32)
    g.request(ids["A"], at("12:39"), count=64)


@pytest.fixture
def first_day(gateway):
    """`gateway` with `add_first_day`'s requests."""
    add_first_day(gateway[0], gateway[2])
    return gateway


@pytest.fixture
def first_day_sqlite(sqlite_gateway):
    add_first_day(sqlite_gateway[0], sqlite_gateway[2])
    return sqlite_gateway


def test_first_sync_writes_the_settled_slices_from_the_oldest_request_up_to_now_minus_settle(first_day):
    g, archive_url, ids = first_day
    result = run_sync(g.url, archive_url, now=at("12:40"))
    assert result.watermark == at("10:30")
    assert result.slices == 6              # 09:00, 09:15, ..., 10:15
    assert result.requests == 1 + 2 + 4 + 8 + 16
    assert result.gap is None
    store = open_store(archive_url)
    state = store.state()
    store.close()
    assert (state.first_slice, state.watermark) == (epoch(at("09:00")), epoch(at("10:30")))
    assert state.settle_seconds == 2 * 3600 and state.synced_at == epoch(at("12:40"))
    assert state.gateway_oldest == epoch(at("09:00"))
    for table in (schema.slice_detail, schema.slice_token, schema.hour_token):   # nothing after it
        assert read(archive_url, select(func.max(table.c.slice)))[0][0] < epoch(at("10:30"))


def test_first_sync_counts_per_slice_and_token_equal_the_hand_counts(first_day):
    g, archive_url, ids = first_day
    A, B = ids["A"], ids["B"]
    run_sync(g.url, archive_url, now=at("12:40"))
    assert slice_rows(archive_url, schema.slice_token, "failed") == {
        ("09:00", A, "gpt-4o", 0): 3,
        ("09:15", A, "gpt-4o", 0): 4,
        ("09:15", B, "claude", 0): 8,
        ("10:15", B, "gpt-4o", 16): 16,
    }
    assert slice_rows(archive_url, schema.slice_detail, "user_id", "status_code") == {
        ("09:00", A, "gpt-4o", "", 200): 3,
        ("09:15", A, "gpt-4o", "u@x", 200): 4,
        ("09:15", B, "claude", "", 200): 8,
        ("10:15", B, "gpt-4o", "", 500): 16,
    }
    # Only the whole hour 09:00 is complete below the watermark 10:30.
    assert slice_rows(archive_url, schema.hour_token, "failed") == {
        ("09:00", A, "gpt-4o", 0): 7,
        ("09:00", B, "claude", 0): 8,
    }
    t = schema.slice_token
    # 3 requests of 10 input, 5 output tokens and 100 ms on /v1/chat/completions.
    assert read(archive_url, select(t.c.input_tokens, t.c.output_tokens, t.c.completion_ms_sum, t.c.completion_n,
                                    t.c.embedding_ms_sum, t.c.embedding_n)
                .where(t.c.slice == epoch(at("09:00")), t.c.token_id == A)) == [(30, 15, 300, 3, 0, 0)]


def test_first_sync_copies_the_catalogue_as_last_seen(first_day):
    g, archive_url, ids = first_day
    run_sync(g.url, archive_url, now=at("12:40"))
    t = schema.seen_token
    assert read(archive_url, select(t.c.id, t.c.name, t.c.owner_id, t.c.owner_org_id, t.c.last_seen)
                .order_by(t.c.id)) == [
        (ids["A"], "A", ids["root"], ids["acme"], epoch(at("12:40"))),
        (ids["B"], "B", ids["root"], ids["acme"], epoch(at("12:40"))),
    ]
    assert read(archive_url, select(schema.seen_org.c.id, schema.seen_org.c.name)) == [(ids["acme"], "Acme")]


# --- 2. idempotent ---------------------------------------------------------------------


def test_second_sync_at_the_same_now_changes_nothing(first_day):
    g, archive_url, _ = first_day
    run_sync(g.url, archive_url, now=at("12:40"))
    before = dump(archive_url)
    result = run_sync(g.url, archive_url, now=at("12:40"))
    assert (result.slices, result.requests, result.watermark) == (0, 0, at("10:30"))
    assert dump(archive_url) == before


def test_syncs_every_few_minutes_give_the_archive_of_one_sync(first_day, new_archive):
    g, archive_url, _ = first_day
    # 12:00, 12:07, ..., 12:35, then 12:40
    run_sync(g.url, archive_url, now=[at("12:00") + timedelta(minutes=m) for m in range(0, 41, 7)] + [at("12:40")])
    once = new_archive(g.backend)
    run_sync(g.url, once, now=at("12:40"))
    assert without_synced_at(dump(archive_url)) == without_synced_at(dump(once))


# --- 3. resumable after a kill at any point -------------------------------------------

#: One statement, so one snapshot: the watermark and the newest slice of each table.
SEEN_BY_A_READER = text(
    "SELECT (SELECT watermark FROM archive_state WHERE id = 1),"
    " (SELECT max(slice) FROM slice_detail), (SELECT max(slice) FROM slice_token),"
    " (SELECT max(slice) FROM hour_token), (SELECT max(slice) FROM slice_health)"
)


def week_of_requests(g, ids, days: int = 8, start: datetime = DAY) -> None:
    """A few requests every day for `days` days from `start`."""
    for day in range(days):
        base = start + timedelta(days=day)
        g.request(ids["A"], at("00:05", base), count=1 + day)
        g.request(ids["B"], at("07:59:59.5", base), count=2, model="claude", status=429)
        g.request(ids["A"], at("13:30", base), count=4, user_id="u@x", path="/v1/embeddings", model="embed-small")
        g.request(ids["B"], at("23:59:59", base), count=8)


def test_sync_killed_at_any_point_resumes_to_the_archive_of_one_uninterrupted_sync(gateway, new_archive):
    g, archive_url, ids = gateway
    week_of_requests(g, ids)
    now = DAY + timedelta(days=12, hours=12, minutes=40)     # 13 days to catch up
    store = open_store(archive_url, writable=True)   # created and migrated, no state yet
    seen, started = [], []

    def look() -> tuple:
        """What a reader sees now: (watermark, newest slice of each table)."""
        with store.engine.connect() as conn:
            row = tuple(conn.execute(SEEN_BY_A_READER).one())
        seen.append(row)
        return row

    def start_sync(seed: int, pause: float) -> subprocess.Popen:
        started.append(subprocess.Popen([sys.executable, "-c", SLOW_SYNC, g.url, archive_url, now.isoformat(),
                                         str(seed), str(pause)],
                                        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return started[-1]

    def kill(process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate(timeout=10)
        assert process.returncode == -signal.SIGKILL and "done" not in out, (out, err)
        look()

    def nothing_from(low: int) -> None:
        assert store.state().watermark == low
        for table in (schema.slice_detail, schema.slice_token, schema.hour_token, schema.slice_health):
            assert read(archive_url, select(func.count()).select_from(table).where(table.c.slice >= low)) == [(0,)]

    try:
        # 1. Right after a day has committed, at a random moment: in the next day's
        #    read or write.
        process = start_sync(1, 0.1)
        whole = new_archive(g.backend)               # meanwhile, one uninterrupted sync
        run_sync(g.url, whole, now=now)
        assert process.stdout.readline().startswith("wrote"), process.stderr.read()
        deadline = time.monotonic() + 20
        while look()[0] == store.state().first_slice and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(random.Random(13).uniform(0, 0.2))
        kill(process)
        # 2. Inside a day's transaction: the day is written but not committed. Readers
        #    do not see it, and once killed it is gone: the watermark is where it starts.
        process = start_sync(2, 30)
        line = process.stdout.readline().split()
        assert line and line[0] == "wrote", process.stderr.read()
        nothing_from(int(line[1]))
        look()
        kill(process)
        nothing_from(int(line[1]))
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.communicate()

    assert store.state().watermark < epoch(now - SETTLE), "a run was killed too late to matter"
    run_sync(g.url, archive_url, now=now, wait=True)
    look()
    store.close()
    assert dump(archive_url) == dump(whole)
    # No reader ever saw a slice at or above the watermark.
    for watermark, *newest in seen:
        assert all(slice_ is None or slice_ < watermark for slice_ in newest), (watermark, newest)


#: Forks runs of `slow_sync`, the library imported once (a new Python takes a second to
#: import it): for each seed on stdin it forks a run and prints its pid, and once told
#: (a line on stdin: the run's pid stays ours until it is reaped) its exit status.
#: argv: gateway URL, archive URL, now (ISO), pause.
SYNC_FORKER = """
import os, sys, traceback
from tests.support.archive import slow_sync
gateway, archive, now, pause = sys.argv[1:]
for seed in sys.stdin:
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        try:
            slow_sync(gateway, archive, now, seed, pause)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    print(pid, flush=True)
    sys.stdin.readline()
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""
#: The archive's tables of rows per slice, hour and day, with the length of that time.
GRAINS = {**{table.name: SLICE for table in SLICE_TABLES}, schema.hour_token.name: HOUR,
          schema.day_token.name: DAY_SECONDS}
WATERMARK = schema.state.columns.keys().index("watermark")


def whole_units_before(tables: dict[str, list[tuple]], watermark: int) -> dict[str, list[tuple]]:
    """A dump's rows of the slices, hours and days that end by `watermark` (`slice` is
    each table's first column)."""
    return {name: [row for row in tables[name] if row[0] < floor_to(watermark, step)] for name, step in GRAINS.items()}


def test_sync_killed_twenty_times_in_a_row_at_random_points_ends_as_one_uninterrupted_sync(gateway, new_archive):
    """Each run is killed 0 to 0.5 s after it starts (seeded), wherever it is: opening
    the archive, copying the catalogue, reading a day, writing it, inside its
    transaction. After every kill the archive holds exactly the clean sync's slices,
    hours and days before its watermark, and nothing after it; the run after the last
    kill completes it to the clean sync's archive, row for row: nothing counted twice,
    nothing lost. The delays add up to 5 s and each day takes its 0.05 s pause and its
    seeded read pause: even a machine doing no work in no time would get through 37 of
    the 50 days, so every run is killed part-way. (Opening takes a run 0.1-0.3 s: with
    delays up to 0.3 s most kills landed there.)"""
    g, archive_url, ids = gateway
    week_of_requests(g, ids)
    now = DAY + timedelta(days=49, hours=12, minutes=40)
    clean_url = new_archive(g.backend)
    run_sync(g.url, clean_url, now=now)
    clean = dump(clean_url)
    open_store(archive_url, writable=True).close()   # created and migrated, no state yet
    delays = random.Random(16)
    watermarks = []
    forker = subprocess.Popen([sys.executable, "-c", SYNC_FORKER, g.url, archive_url, now.isoformat(), "0.05"],
                              cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for run in range(20):
            forker.stdin.write(f"{run}\n")
            forker.stdin.flush()
            pid = int(forker.stdout.readline())
            time.sleep(delays.uniform(0, 0.5))
            os.kill(pid, signal.SIGKILL)
            forker.stdin.write("reap\n")
            forker.stdin.flush()
            assert int(forker.stdout.readline()) == -signal.SIGKILL, f"run {run} ended before its kill"
            tables = dump(archive_url)
            state = tables["archive_state"]
            watermarks.append(state[0][WATERMARK] if state else epoch(DAY))   # DAY: the first slice
            assert whole_units_before(tables, watermarks[-1]) == whole_units_before(clean, watermarks[-1]), run
            assert tables["archive_gap"] == [] and tables["seen_token"] in ([], clean["seen_token"]), run
    finally:
        forker.kill()
        forker.communicate()
    assert watermarks == sorted(watermarks) and watermarks[-1] < epoch(now - SETTLE), watermarks
    run_sync(g.url, archive_url, now=now, wait=True)
    assert dump(archive_url) == clean


# --- 4. one writer at a time -----------------------------------------------------------

#: Holds the archive's writer lock: says "locked", and once told to (a line on stdin)
#: keeps it one second more and exits.
HOLD_LOCK = """
import sys, time
from usage_lib.history.store import open_store, writer_lock
store = open_store(sys.argv[1], writable=True)
with writer_lock(store):
    print("locked", flush=True)
    sys.stdin.readline()
    time.sleep(1.0)
"""


def assert_busy_message(error: pytest.ExceptionInfo, archive_url: str) -> None:
    message = str(error.value)
    assert "\n" not in message and "another sync is writing" in message
    shown = archive_url.split("@")[-1] if "@" in archive_url else archive_url
    assert shown in message, (shown, message)


def test_second_sync_while_the_writer_lock_is_held_says_so_in_one_line_naming_the_archive(first_day):
    g, archive_url, _ = first_day
    store = open_store(archive_url, writable=True)
    try:
        with writer_lock(store):
            with pytest.raises(UsageError) as error:
                run_sync(g.url, archive_url, now=at("12:40"))
        assert_busy_message(error, archive_url)
        assert store.state() is None            # it wrote nothing
        run_sync(g.url, archive_url, now=at("12:40"))   # the lock is free again
        assert store.state().watermark == epoch(at("10:30"))
    finally:
        store.close()


def test_sync_with_wait_waits_for_the_writer_lock_held_by_another_process(first_day):
    g, archive_url, _ = first_day
    open_store(archive_url, writable=True).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, archive_url], cwd=REPO_ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        with pytest.raises(UsageError) as error:
            run_sync(g.url, archive_url, now=at("12:40"))
        assert_busy_message(error, archive_url)
        holder.stdin.write("release in a second\n")
        holder.stdin.flush()
        started = time.monotonic()
        result = run_sync(g.url, archive_url, now=at("12:40"), wait=True)
        waited = time.monotonic() - started
        assert holder.wait(timeout=10) == 0
    finally:
        holder.kill()
        holder.wait()
    assert waited > 0.8                          # the holder kept the lock for 1 s more
    assert result.watermark == at("10:30") and result.requests == 31


# --- 5. late updates: inside the settle horizon counted, after it not seen -------------

STREAM_STARTS = at("10:14:30")      # in the slice 10:00-10:15, settled from 12:15 on


def start_stream(g, token) -> int:
    """A streamed request as the gateway inserts it: tokens 0, status and time NULL."""
    g.request(token, STREAM_STARTS, status=None, ms=None, input_tokens=0, output_tokens=0)
    with g.engine.connect() as conn:
        return conn.execute(select(func.max(gateway_schema.management_request.c.id))).scalar()


def end_stream(g, request_id: int, ended: datetime) -> None:
    """The gateway's update when the stream ends: tokens, response time and status."""
    with g.engine.begin() as conn:
        conn.execute(update(gateway_schema.management_request)
                     .where(gateway_schema.management_request.c.id == request_id)
                     .values(input_tokens=300, output_tokens=700, status_code=200,
                             response_time_ms=int((ended - STREAM_STARTS).total_seconds() * 1000)))


def syncs_every_five_minutes(g, archive_url, first: datetime, last: datetime, event) -> None:
    """Sync at first, first + 5 min, ..., last; `event` is (time, action): the action
    runs just before the sync at that time."""
    moments = [first + timedelta(minutes=5 * i) for i in range(int((last - first) / timedelta(minutes=5)) + 1)]
    when, action = event
    run_sync(g.url, archive_url, now=[m for m in moments if m < when])
    action()
    run_sync(g.url, archive_url, now=[m for m in moments if m >= when])


@pytest.fixture
def stream_day(gateway):
    """Settled requests from 08:00 on, and a stream started at 10:14:30 by token A."""
    g, archive_url, ids = gateway
    g.request(ids["A"], at("08:00"), count=1)
    g.request(ids["B"], at("09:40"), count=2)
    stream = start_stream(g, ids["A"])
    g.request(ids["B"], at("10:20"), count=4)
    return g, archive_url, ids, stream


def test_a_stream_ending_inside_the_settle_horizon_is_counted_through_the_archive(stream_day):
    g, archive_url, ids, stream = stream_day
    # Ends at 12:12, 1 h 57 min after its slice ended, 3 min before the slice settles.
    syncs_every_five_minutes(g, archive_url, at("11:30"), at("12:20"),
                             event=(at("12:15"), lambda: end_stream(g, stream, at("12:12"))))
    t = schema.slice_token
    assert read(archive_url, select(t.c.requests, t.c.input_tokens, t.c.output_tokens, t.c.completion_n)
                .where(t.c.slice == epoch(at("10:00")))) == [(1, 300, 700, 1)]
    for selection in ({"span": "1d"}, {"start": at("08:00"), "end": at("10:15")}):
        direct = usage(g.url, now=at("12:20"), **selection)
        archived = usage(g.url, archive_url=archive_url, now=at("12:20"), **selection)
        assert figures(archived) == figures(direct)
        assert direct.metrics.input_tokens == 10 + 2 * 10 + 300 + (4 * 10 if "span" in selection else 0)


def test_an_update_after_the_settle_horizon_is_the_one_thing_the_archive_misses(stream_day):
    g, archive_url, ids, stream = stream_day
    # The slice 10:00 settles at 12:15 and is written with the stream still at zero;
    # the stream ends at 12:16, 2 h 1 min after its slice ended: the archive keeps zero.
    syncs_every_five_minutes(g, archive_url, at("11:30"), at("12:20"),
                             event=(at("12:20"), lambda: end_stream(g, stream, at("12:16"))))
    selection = {"start": at("08:00"), "end": at("10:15")}
    direct = usage(g.url, now=at("12:20"), **selection).metrics
    archived = usage(g.url, archive_url=archive_url, now=at("12:20"), **selection).metrics
    assert (direct.input_tokens, direct.output_tokens) == (10 + 20 + 300, 5 + 10 + 700)
    assert (archived.input_tokens, archived.output_tokens) == (10 + 20, 5 + 10)
    assert archived.total_requests == direct.total_requests == 4
    assert direct.avg_response_ms_completion != archived.avg_response_ms_completion == 100.0


# --- 6. history beyond the gateway's retention -----------------------------------------

RETAINED = datetime(2026, 11, 10, tzinfo=UTC)       # the organisation's first day
CUTOFF = datetime(2026, 11, 17, 4, 0, tzinfo=UTC)    # the retention job deletes before it
LATER = datetime(2026, 11, 20, 12, 40, tzinfo=UTC)   # now


def older(days: int, clock: str) -> datetime:
    return at(clock, RETAINED + timedelta(days=days))


@pytest.fixture
def two_orgs(gateway_db, new_archive):
    """Acme (root: global admin, olga: org admin, ursula: user) and Beta (bert), with

        urs   ursula's   Nov 12 09:03 1, Nov 12 09:10 2, Nov 14 15:00 4, Nov 18 10:00 8
        gone  ursula's   Nov 12 10:00 16, Nov 15 23:59 32, Nov 18 11:00 64  (deleted later)
        bert  bert's     Nov 13 11:00 128 claude, Nov 18 09:00 256

    synced at LATER (Nov 20 12:40): the archive holds everything before Nov 20 10:30.
    """
    g = gateway_db()
    acme, beta = g.org("Acme"), g.org("Beta")
    users = {
        "root": g.user("root", role="admin", org=acme),
        "olga": g.user("olga", role="org-admin", org=acme),
        "ursula": g.user("ursula", role="user", org=acme),
        "bert": g.user("bert", role="user", org=beta),
    }
    tokens = {"urs": g.token(users["ursula"], "urs"), "gone": g.token(users["ursula"], "gone"),
              "bert": g.token(users["bert"], "bert")}
    g.request(tokens["urs"], older(2, "09:03"), count=1)
    g.request(tokens["urs"], older(2, "09:10"), count=2)
    g.request(tokens["urs"], older(4, "15:00"), count=4)
    g.request(tokens["urs"], older(8, "10:00"), count=8)
    g.request(tokens["gone"], older(2, "10:00"), count=16)
    g.request(tokens["gone"], older(5, "23:59"), count=32)
    g.request(tokens["gone"], older(8, "11:00"), count=64)
    g.request(tokens["bert"], older(3, "11:00"), count=128, model="claude")
    g.request(tokens["bert"], older(8, "09:00"), count=256)
    archive_url = new_archive(g.backend)
    run_sync(g.url, archive_url, now=LATER)
    return g, archive_url, {"acme": acme, "beta": beta, **users}, tokens


def retention_job(g, cutoff: datetime = CUTOFF) -> None:
    """What the gateway's nightly job does: delete every request older than `cutoff`."""
    bound = django_text(cutoff) if g.backend == "sqlite" else cutoff
    with g.engine.begin() as conn:
        conn.execute(text('DELETE FROM management_request WHERE "timestamp" < :cutoff'), {"cutoff": bound})


def delete_token(g, token: int) -> None:
    """Deleting a token in the gateway: its requests go with it (cascade), then the token."""
    with g.engine.begin() as conn:
        conn.execute(delete(gateway_schema.management_request).where(gateway_schema.management_request.c.token_id == token))
        conn.execute(delete(gateway_schema.management_token).where(gateway_schema.management_token.c.id == token))


#: Slice-aligned ranges older than the cutoff: 4 days (day buckets), 12 hours (hour
#: buckets).
OLD_RANGES = [(older(2, "00:00"), older(6, "00:00")), (older(2, "09:00"), older(2, "21:00"))]


def test_history_beyond_retention_gives_the_figures_the_gateway_gave_before_it_deleted(two_orgs):
    g, archive_url, users, tokens = two_orgs
    asks = [(viewer, {"start": start, "end": end, **({"org": "all"} if viewer == "root" else {})})
            for start, end in OLD_RANGES for viewer in ("root", "olga", "ursula")]
    before = [figures(usage(g.url, viewer, now=LATER, **selection)) for viewer, selection in asks]
    retention_job(g)
    delete_token(g, tokens["gone"])
    assert usage(g.url, "root", now=LATER, **asks[0][1]).metrics.total_requests == 0   # the gateway forgot
    after = [figures(usage(g.url, viewer, archive_url=archive_url, now=LATER, **selection))
             for viewer, selection in asks]
    for ask, was, now_is in zip(asks, before, after):
        assert now_is == was, ask


def test_a_deleted_token_keeps_the_org_it_was_last_seen_in(two_orgs):
    g, archive_url, users, tokens = two_orgs
    retention_job(g)
    delete_token(g, tokens["gone"])
    start, end = OLD_RANGES[0]             # Nov 12 to Nov 16
    by_org = usage(g.url, "root", archive_url=archive_url, now=LATER, start=start, end=end, org="all").top
    # Acme: urs 1 + 2 + 4, gone 16 + 32; Beta: bert 128.
    assert list(zip(by_org["name"], by_org["requests"])) == [("Beta", 128), ("Acme", 55)]
    in_acme = usage(g.url, "olga", archive_url=archive_url, now=LATER, start=start, end=end).top
    assert list(zip(in_acme["name"], in_acme["requests"])) == [("gone", 48), ("urs", 7)]
    in_beta = usage(g.url, "bert", archive_url=archive_url, now=LATER, start=start, end=end).top
    assert "gone" not in list(in_beta["name"])


def test_a_range_starting_inside_a_slice_in_deleted_time_snaps_to_the_slice_with_a_notice(two_orgs):
    g, archive_url, users, tokens = two_orgs
    # Nov 12 09:07 to 13:00: the slice 09:00-09:15 holds urs's 1 (09:03) and 2 (09:10).
    start, end = older(2, "09:07"), older(2, "13:00")
    # Without the previous period: the two ranges' periods before differ.
    snapped = figures(usage(g.url, now=LATER, start=older(2, "09:00"), end=end, org="all", compare=False))
    retention_job(g)
    run_sync(g.url, archive_url, now=LATER)     # the sync after the retention job
    shown = usage(g.url, archive_url=archive_url, now=LATER, start=start, end=end, org="all", compare=False)
    assert shown.metrics.total_requests == 1 + 2 + 16
    assert figures(shown)["metrics"] == snapped["metrics"]
    assert figures(shown)["top"] == snapped["top"]
    assert [n for n in shown.notices if "range's start" in n] == [
        "The gateway no longer holds the requests at the range's start: shown from 2026-11-12 09:00, "
        "the start of the archive's 15-minute slice."]


def test_a_range_of_minutes_in_deleted_time_counts_each_slice_in_its_first_minute(two_orgs):
    g, archive_url, users, tokens = two_orgs
    start, end = older(2, "09:00"), older(2, "10:30")      # 90 minutes: minute buckets
    direct = usage(g.url, now=LATER, start=start, end=end, org="all")
    retention_job(g)
    run_sync(g.url, archive_url, now=LATER)
    shown = usage(g.url, archive_url=archive_url, now=LATER, start=start, end=end, org="all")
    assert figures(shown)["metrics"] == figures(direct)["metrics"]
    assert figures(shown)["top"] == figures(direct)["top"]
    # urs's 1 at 09:03 and 2 at 09:10 in the minute 09:00; gone's 16 at 10:00.
    counts = {bucket.strftime("%H:%M"): n for bucket, n in zip(shown.timeseries["bucket"], shown.timeseries["requests"]) if n}
    assert counts == {"09:00": 3, "10:00": 16}
    assert ("Before 2026-11-12 10:30 the gateway no longer holds the requests: each 15-minute slice of the "
            "archive is counted in its first minute.") in shown.notices


def test_a_range_starting_inside_a_slice_the_gateway_still_holds_is_not_snapped(two_orgs):
    g, archive_url, users, tokens = two_orgs
    start, end = older(2, "09:07"), older(2, "13:00")
    direct = usage(g.url, now=LATER, start=start, end=end, org="all")
    archived = usage(g.url, archive_url=archive_url, now=LATER, start=start, end=end, org="all")
    assert archived.metrics.total_requests == 2 + 16
    assert figures(archived) == figures(direct)
    # Nothing snapped; both say that the previous period (before 09:03) has no record.
    assert archived.notices == direct.notices == (PREVIOUS_PARTIAL_NOTICE,)


# --- 7. a gap: the gateway deleted requests before a sync saved them --------------------


@pytest.fixture
def gap(gateway):
    """Synced on Nov 1 at 12:40 (watermark 10:30); no sync until Nov 11 12:40, after the
    retention job (7 days) deleted everything before Nov 4 04:00 on Nov 11.

        A: Nov 1 09:00 1, Nov 1 10:05 16 (synced: the hour 10:00 is half synced),
           Nov 3 12:00 2 (deleted unsynced), Nov 6 09:00 4, Nov 10 12:00 8
    """
    g, archive_url, ids = gateway
    nov = lambda day, clock: at(clock, datetime(2026, 11, day, tzinfo=UTC))  # noqa: E731
    g.request(ids["A"], nov(1, "09:00"), count=1)
    g.request(ids["A"], nov(1, "10:05"), count=16)
    first = run_sync(g.url, archive_url, now=nov(1, "12:40"))
    g.request(ids["A"], nov(3, "12:00"), count=2)
    g.request(ids["A"], nov(6, "09:00"), count=4)
    g.request(ids["A"], nov(10, "12:00"), count=8)
    retention_job(g, nov(4, "04:00"))
    second = run_sync(g.url, archive_url, now=nov(11, "12:40"), retention=timedelta(days=7))
    return g, archive_url, nov, first, second


def test_a_sync_after_the_gateway_deleted_unsynced_requests_records_the_gap(gap):
    g, archive_url, nov, first, second = gap
    assert first.watermark == nov(1, "10:30")
    # From the old watermark to now - retention: younger requests were not deleted, so
    # the quiet time after it (to the oldest request left, Nov 6 09:00) is no gap.
    assert second.gap == (nov(1, "10:30"), nov(4, "12:30"))
    assert second.watermark == nov(11, "10:30")
    assert read(archive_url, select(schema.gap)) == [(epoch(nov(1, "10:30")), epoch(nov(4, "12:30")))]
    assert second.requests == 4 + 8
    assert first.requests == 1 + 16


def test_a_window_over_a_gap_names_it_in_a_notice_and_one_after_it_does_not(gap):
    g, archive_url, nov, first, second = gap
    shown = usage(g.url, archive_url=archive_url, now=nov(11, "12:40"), start=nov(1, "00:00"), end=nov(8, "00:00"))
    assert shown.metrics.total_requests == 1 + 16 + 4
    assert ("No usage recorded from 2026-11-01 10:30 to 2026-11-04 12:30: the gateway deleted those "
            "requests before a sync saved them.") in shown.notices
    after = usage(g.url, archive_url=archive_url, now=nov(11, "12:40"), start=nov(5, "00:00"), end=nov(8, "00:00"))
    assert after.metrics.total_requests == 4
    assert not [notice for notice in after.notices if "No usage recorded" in notice]


def test_the_hour_a_gap_starts_in_keeps_the_slices_synced_before_the_gap(gap):
    g, archive_url, nov, first, second = gap
    # Hourly buckets read the hourly roll-up: the hour 10:00 holds the slice 10:00
    # (synced) and the gap from 10:30.
    shown = usage(g.url, archive_url=archive_url, now=nov(11, "12:40"), start=nov(1, "00:00"), end=nov(2, "00:00"))
    counts = {b.strftime("%H:%M"): n for b, n in zip(shown.timeseries["bucket"], shown.timeseries["requests"]) if n}
    assert counts == {"09:00": 1, "10:00": 16}


def test_a_gateway_emptied_by_its_retention_job_before_a_sync_leaves_a_gap(gateway):
    g, archive_url, ids = gateway
    nov = lambda day, clock: at(clock, datetime(2026, 11, day, tzinfo=UTC))  # noqa: E731
    g.request(ids["A"], nov(1, "09:00"), count=1)
    run_sync(g.url, archive_url, now=nov(1, "12:40"))
    g.request(ids["A"], nov(2, "09:00"), count=2)      # never synced, then deleted
    retention_job(g, nov(12, "04:00"))                 # the gateway holds no request now
    result = run_sync(g.url, archive_url, now=nov(12, "12:40"), retention=timedelta(days=7))
    assert result.gap == (nov(1, "10:30"), nov(5, "12:30"))
    assert result.watermark == nov(12, "10:30")


# --- 7b. the retention job deleting while a sync runs ----------------------------------

JOB_NOW = DAY + timedelta(days=12, hours=12, minutes=40)   # the catch-up's now
#: Its retention job ran at 04:00 that day (7 days): requests before this are gone.
JOB_CUTOFF = DAY + timedelta(days=5, hours=4)


@pytest.fixture
def catching_up(gateway, new_archive):
    """`week_of_requests` (DAY to DAY + 7) synced up to DAY + 1 10:30; and a clean archive:
    one sync at JOB_NOW before anything was deleted. (builder, archive, clean archive)"""
    g, archive_url, ids = gateway
    week_of_requests(g, ids)
    run_sync(g.url, archive_url, now=at("12:40", DAY + timedelta(days=1)))
    clean = new_archive(g.backend)
    run_sync(g.url, clean, now=JOB_NOW)
    return g, archive_url, clean


def sync_while_the_retention_job_runs(g, archive_url: str, day_end: datetime) -> None:
    """A sync at JOB_NOW in another process; the gateway's retention job runs from this one
    while the sync holds the day ending at `day_end` read and written, not committed."""
    process = subprocess.Popen([sys.executable, "-c", SLOW_SYNC, g.url, archive_url, JOB_NOW.isoformat(), "0", "step"],
                               cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deleted = False
    try:
        for line in process.stdout:
            if line.startswith("wrote"):
                if int(line.split()[2]) == epoch(day_end):
                    retention_job(g, JOB_CUTOFF)
                    deleted = True
                process.stdin.write("go\n")
                process.stdin.flush()
        assert process.wait(timeout=30) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert deleted, "the sync never held that day"


def test_the_retention_job_deleting_unsynced_requests_during_a_sync_leaves_a_gap_and_counts_nothing_twice(
        catching_up, new_archive):
    """The job deletes before DAY + 5 04:00 while the sync holds the day up to DAY + 3:
    the days after it it had not read yet lose their requests. SPEC §5: the archive says
    where it has a gap. So the archive keeps what the sync read before the job as the
    clean sync has it, records a gap from DAY + 3 to the slice of the oldest request left
    (DAY + 5 07:45), and from there equals the clean sync: the archive a sync stopped at
    DAY + 3 and run again after the job makes; nothing is counted twice."""
    g, archive_url, clean = catching_up
    stopped = new_archive(g.backend)
    run_sync(g.url, stopped, now=[at("12:40", DAY + timedelta(days=1)), DAY + timedelta(days=3) + SETTLE])
    sync_while_the_retention_job_runs(g, archive_url, DAY + timedelta(days=3))
    run_sync(g.url, stopped, now=JOB_NOW)
    gap = (epoch(DAY + timedelta(days=3)), epoch(at("07:45", DAY + timedelta(days=5))))
    assert read(archive_url, select(schema.gap)) == [gap]
    detail = schema.slice_detail
    outside = select(detail).where((detail.c.slice < gap[0]) | (detail.c.slice >= gap[1]))
    assert sorted(read(archive_url, outside)) == sorted(read(clean, outside))
    # Days 0-2: 15 + 16 + 17; day 5 from 07:45: 2 + 4 + 8; days 6, 7: 21 + 22.
    assert read(archive_url, select(func.sum(schema.slice_token.c.requests))) == [(15 + 16 + 17 + 14 + 21 + 22,)]
    assert dump(archive_url) == dump(stopped)


def test_the_retention_job_deleting_only_synced_requests_during_a_sync_changes_nothing(catching_up):
    """The job deletes before DAY + 5 04:00 while the sync holds the day up to DAY + 6: it
    read every deleted request before. Nothing settled is lost, nothing counted twice:
    the archive equals the clean sync's, row for row."""
    g, archive_url, clean = catching_up
    sync_while_the_retention_job_runs(g, archive_url, DAY + timedelta(days=6))
    assert dump(archive_url) == dump(clean)


# --- 8. the archive's schema and files -------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


def test_sqlite_archive_and_its_side_files_are_private_to_their_owner(tmp_path, first_day_sqlite):
    g, _, _ = first_day_sqlite
    path = tmp_path / "private" / "archive.sqlite3"
    run_sync(g.url, f"sqlite:///{path}", now=at("12:40"))
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    assert files["archive.sqlite3"] == 0o600
    assert all(mode == 0o600 for mode in files.values()), files


def test_migrations_at_head_create_exactly_the_tables_of_the_schema_module(backend, new_archive):
    store = open_store(new_archive(backend), writable=True)
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            assert compare_metadata(context, schema.metadata) == []
    finally:
        store.close()


def test_opening_a_missing_archive_for_reading_says_so_in_one_line(tmp_path):
    path = tmp_path / "nowhere.sqlite3"
    with pytest.raises(UsageError) as error:
        open_archive(f"sqlite:///{path}")
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    assert not path.exists()


def test_opening_a_file_that_is_no_database_for_reading_says_so_in_one_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    with pytest.raises(UsageError) as error:
        open_archive(f"sqlite:///{path}")
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_opening_a_database_that_is_no_archive_for_reading_says_so_in_one_line(backend, new_archive):
    url = new_archive(backend)
    engine = create_engine(url)
    with engine.begin() as conn:         # a database, but not an archive
        conn.execute(text("CREATE TABLE notes (id integer)"))
    engine.dispose()
    with pytest.raises(UsageError) as error:
        open_archive(url)
    message = str(error.value)
    assert "\n" not in message and "is not an archive" in message


# --- 9. progress ------------------------------------------------------------------------


def test_a_catch_up_of_many_days_shows_a_progress_bar_on_stderr(sqlite_gateway, capsys):
    g, archive_url, ids = sqlite_gateway
    week_of_requests(g, ids)
    capsys.readouterr()
    result = run_sync(g.url, archive_url, now=DAY + timedelta(days=8, hours=12, minutes=40), progress=True)
    err = capsys.readouterr().err
    assert result.slices == (8 * 24 + 10) * 4 + 2     # 00:00 Nov 24 to 10:30 Dec 2, from 00:00
    assert "sync" in err and "100%" in err and "day" in err


def test_a_sync_of_one_day_shows_no_progress_bar(first_day_sqlite, capsys):
    g, archive_url, _ = first_day_sqlite
    capsys.readouterr()
    run_sync(g.url, archive_url, now=at("12:40"), progress=True)
    assert capsys.readouterr().err == ""


# --- gateways older than the user_id column -------------------------------------------


def test_a_gateway_without_the_user_id_column_syncs_and_reads_the_same_figures(gateway_db, new_archive):
    g = gateway_db(user_id_column=False)
    ids = admin_with_two_tokens(g)
    g.request(ids["A"], at("09:05"), count=1)
    g.request(ids["B"], at("09:50"), count=2, model="claude")
    archive_url = new_archive(g.backend)
    result = run_sync(g.url, archive_url, now=at("12:40"))
    assert result.requests == 3
    assert read(archive_url, select(schema.slice_detail.c.user_id).distinct()) == [(None,)]
    direct = usage(g.url, now=at("12:40"), org="all")
    assert figures(usage(g.url, archive_url=archive_url, now=at("12:40"), org="all")) == figures(direct)

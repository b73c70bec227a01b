"""pytest plugin and helpers for tests of the usage archive.

Fixture ``new_archive``: a factory of empty archive URLs on a backend ("sqlite" or
"postgresql"). `dump` reads every row of an archive. `slow_sync` is a sync slowed down
so that a kill, or the gateway's retention job in another process, lands part-way; run
it in a process of its own (`SLOW_SYNC` with ``python -c``, or a forked child).
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from datetime import datetime

import pytest
from sqlalchemy import inspect, text

from usage_lib.gateway.db import open_database
from usage_lib.history import schema
from usage_lib.history import sync as sync_module
from usage_lib.history.store import open_store

TABLES = [table.name for table in schema.metadata.sorted_tables]


@pytest.fixture
def new_archive(request, tmp_path):
    """A factory of empty archive URLs on a backend ("sqlite" or "postgresql")."""
    numbers = itertools.count()

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'archive{next(numbers)}.sqlite3'}"
        return request.getfixturevalue("fresh_postgres_database")("archive")

    return make


def dump(archive_url: str) -> dict[str, list[tuple]]:
    """Every row of every table in the archive's database (Alembic's too), sorted."""
    store = open_store(archive_url)
    try:
        with store.engine.connect() as conn:
            names = inspect(conn).get_table_names()
            assert set(TABLES) <= set(names)
            return {name: sorted((tuple(row) for row in conn.execute(text(f'SELECT * FROM "{name}"'))), key=repr)
                    for name in names}
    finally:
        store.close()


def slow_sync(gateway: str, archive: str, now: str, seed: int | str, pause: float | str) -> None:
    """A sync (waiting for the writer lock) with a random pause of up to 0.1 s before each
    day's read (`seed`), and after each day's writes a line "wrote LOW HIGH" on stdout and
    a pause inside the transaction, which has not committed yet: `pause` seconds, or with
    "step" until a line arrives on stdin. Prints "done" at the end. Patches the sync
    module: only in a process of its own."""
    rng = random.Random(int(seed))
    read_chunk, write_chunk = sync_module._read_chunk, sync_module._write_chunk

    def slow_read(*args):
        time.sleep(rng.uniform(0, 0.1))
        return read_chunk(*args)

    def slow_write(conn, low, high, *rest):
        requests = write_chunk(conn, low, high, *rest)
        print("wrote", low, high, flush=True)
        if pause == "step":
            sys.stdin.readline()
        else:
            time.sleep(float(pause))
        return requests

    sync_module._read_chunk, sync_module._write_chunk = slow_read, slow_write
    sync_module.sync(open_database(gateway), open_store(archive, writable=True), now=datetime.fromisoformat(now),
                     wait=True)
    print("done", flush=True)


#: `slow_sync` in a new process (cwd: the repository). argv: its arguments.
SLOW_SYNC = "import sys; from tests.support.archive import slow_sync; slow_sync(*sys.argv[1:])"

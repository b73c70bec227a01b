"""Demo databases for the benchmark: built once under `benchmarks/data/`, then reused.

Every database is `usage_lib.demo.build_demo` with a fixed seed and a fixed `now`, so a
rerun finds the same rows. A database is only used when it was built completely: SQLite
files are written under a temporary name and renamed; PostgreSQL databases are built
under a temporary name and renamed with ALTER DATABASE.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from usage_lib import demo

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SEED = 7
#: The traffic of every benchmark database ends here (a Friday afternoon, UTC).
NOW = datetime(2025, 3, 14, 15, 30, tzinfo=timezone.utc)
ROUTER_CONFIG = DATA / "router.yaml"


def configure(data_dir: Path) -> None:
    """Keep databases, manifest and router configuration under `data_dir`."""
    global DATA, ROUTER_CONFIG
    DATA = Path(data_dir).resolve()
    ROUTER_CONFIG = DATA / "router.yaml"


def _generator_digest() -> str:
    return hashlib.sha256(Path(demo.__file__).read_bytes()).hexdigest()[:12]


def _manifest_path() -> Path:
    return DATA / "manifest.json"


def _manifest() -> dict:
    try:
        return json.loads(_manifest_path().read_text())
    except (OSError, ValueError):
        return {}


def _record(key: str, requests: int, seconds: float) -> None:
    manifest = _manifest()
    manifest[key] = {
        "requests": requests, "seed": SEED, "now": NOW.isoformat(),
        "generator": _generator_digest(), "build_seconds": round(seconds, 1),
    }
    _manifest_path().write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _check_record(key: str, log) -> None:
    entry = _manifest().get(key)
    if entry and entry.get("generator") != _generator_digest():
        log(f"note: {key} was built by another version of usage_lib/demo.py (use --rebuild to redo it)")


def write_router_config() -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    ROUTER_CONFIG.write_text(demo.router_config_yaml(), encoding="utf-8")
    return ROUTER_CONFIG


def sqlite_database(requests: int, *, rebuild: bool = False, log=print) -> tuple[str, float | None]:
    """URL of the SQLite demo database of `requests` rows; build seconds if built now."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"demo-{requests}.sqlite3"
    key = f"sqlite-{requests}"
    if path.exists() and not rebuild:
        _check_record(key, log)
        return f"sqlite:///{path}", None
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    log(f"building SQLite demo database of {requests:,} requests ...")
    started = time.perf_counter()
    demo.build_demo(f"sqlite:///{partial}", DATA / "router.partial.yaml", requests=requests,
                    seed=SEED, now=NOW)
    (DATA / "router.partial.yaml").unlink(missing_ok=True)
    partial.replace(path)
    seconds = time.perf_counter() - started
    _record(key, requests, seconds)
    log(f"  built in {seconds:.0f} s")
    return f"sqlite:///{path}", seconds


def postgres_database(server, requests: int, *, rebuild: bool = False, log=print) -> tuple[str, float | None]:
    """URL of the PostgreSQL demo database of `requests` rows (ANALYZEd); build seconds."""
    name = f"demo_{requests}"
    key = f"postgresql-{requests}"
    present = server.databases()
    if name in present and not rebuild:
        _check_record(key, log)
        return server.database_url(name), None
    partial = f"{name}_partial"
    server.admin(f'DROP DATABASE IF EXISTS "{partial}" WITH (FORCE)')
    server.admin(f'CREATE DATABASE "{partial}" TEMPLATE template0 ENCODING \'UTF8\'')
    log(f"building PostgreSQL demo database of {requests:,} requests ...")
    started = time.perf_counter()
    demo.build_demo(server.database_url(partial), DATA / "router.partial.yaml",
                    requests=requests, seed=SEED, now=NOW)
    (DATA / "router.partial.yaml").unlink(missing_ok=True)
    # build_demo ends with ANALYZE; VACUUM sets the visibility map (index-only scans), as
    # autovacuum would on a live gateway.
    _vacuum(server.database_url(partial))
    server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                 f'ALTER DATABASE "{partial}" RENAME TO "{name}"')
    seconds = time.perf_counter() - started
    _record(key, requests, seconds)
    log(f"  built in {seconds:.0f} s")
    return server.database_url(name), seconds


def postgres_in_database(url: str, requests: int, *, log=print) -> tuple[str, float | None]:
    """Use one given database: build the demo in it when it has no gateway tables yet."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        present = sa.inspect(engine).has_table("management_request")
    finally:
        engine.dispose()
    if present:
        return url, None
    log(f"building PostgreSQL demo database of {requests:,} requests in the given database ...")
    started = time.perf_counter()
    demo.build_demo(url, DATA / "router.partial.yaml", requests=requests, seed=SEED, now=NOW)
    (DATA / "router.partial.yaml").unlink(missing_ok=True)
    _vacuum(url)
    return url, time.perf_counter() - started


def server_version(url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SHOW server_version")).scalar_one()
    finally:
        engine.dispose()


def _vacuum(url: str) -> None:
    """VACUUM (ANALYZE) until the visibility map covers the request table.

    A live gateway's autovacuum does this in the background (for the older pages); a
    VACUUM right after a bulk load can leave pages unmarked while other sessions' old
    snapshots are around, so try a few times.
    """
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for _attempt in range(5):
                conn.execute(sa.text("VACUUM (ANALYZE) management_request"))
                pages, visible = conn.execute(sa.text(
                    "SELECT relpages, relallvisible FROM pg_class WHERE relname = 'management_request'"
                )).one()
                if visible >= pages:
                    break
                time.sleep(2)
            conn.execute(sa.text("ANALYZE"))
    finally:
        engine.dispose()

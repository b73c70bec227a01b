"""A PostgreSQL server for the benchmark whose data survives between runs.

Like `tests/support/postgres.py`'s throwaway server (initdb from the Debian binaries,
run as `postgres` when we are root, 127.0.0.1 on a free port, trust auth), but the data
directory lives under `benchmarks/data/` so that the demo databases of 1M and 10M
requests are built once and reused. The server is stopped (not deleted) at the end of a
run; `--keep-server` leaves it running for the next one.

Settings are PostgreSQL's defaults (shared_buffers 128MB, work_mem 4MB,
max_parallel_workers_per_gather 2, jit on) except what a benchmark box needs (no fsync:
it only makes building the data faster, reads are unaffected).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import sqlalchemy as sa

SERVER_CONF = """
# aqueduct-usage benchmark server (benchmarks/pgserver.py)
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockdir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 4GB
log_min_messages = warning
timezone = 'UTC'
"""


def find_bindir() -> Path:
    env = os.environ.get("AQUEDUCT_TEST_PG_BINDIR")
    candidates = [env] if env else []

    def version(path: str) -> int:
        match = re.search(r"/(\d+)/bin$", path)
        return int(match.group(1)) if match else 0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for candidate in candidates:
        path = Path(candidate)
        if all((path / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return path
    raise RuntimeError("no PostgreSQL server binaries (looked in /usr/lib/postgresql/*/bin)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.pop("LANG", None)
    return env


class PersistentPostgres:
    """`start()` initdb's `base/` if needed and starts the server; `stop()` stops it."""

    def __init__(self, base: Path, settings: dict[str, str] | None = None):
        self.base = Path(base).resolve()
        self.settings = dict(settings or {})
        self.bindir = find_bindir()
        self.run_as: str | None = None
        self.port: int | None = None
        self.started_here = False
        if os.geteuid() == 0:
            for user in ("postgres", "nobody"):
                try:
                    pwd.getpwnam(user)
                except KeyError:
                    continue
                self.run_as = user
                break
            else:
                raise RuntimeError("running as root and no `postgres` user to run PostgreSQL as")

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return cmd

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            self._cmd(*args), cwd=self.base, env=_clean_env(), capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def _chown(self, path: Path) -> None:
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _running_port(self) -> int | None:
        """Port of a server already running on this data dir (an earlier --keep-server)."""
        pidfile = self.datadir / "postmaster.pid"
        if not pidfile.exists():
            return None
        lines = pidfile.read_text().splitlines()
        try:
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError):
            return None
        except PermissionError:
            pass
        return port

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self._chown(self.base)
        self.base.chmod(0o700)
        running = self._running_port()
        if running is not None:
            self.port = running
            self._wait()
            return
        if not (self.datadir / "PG_VERSION").exists():
            if self.datadir.exists():
                shutil.rmtree(self.datadir)
            result = self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                               "-E", "UTF8", "--locale=C", "--no-sync")
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        last = ""
        for _attempt in range(3):
            self.port = _free_port()
            extra = "".join(f"{name} = '{value}'\n" for name, value in self.settings.items())
            (self.datadir / "postgresql.auto.conf").write_text(
                SERVER_CONF.format(port=self.port, sockdir=self.base) + extra
            )
            self._chown(self.datadir / "postgresql.auto.conf")
            result = self._run("pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile),
                               "-w", "-t", "120", timeout=180)
            if result.returncode == 0:
                self.started_here = True
                self._wait()
                return
            last = f"{result.stdout}\n{result.stderr}"
        raise RuntimeError(f"pg_ctl start failed: {last}")

    def _wait(self, timeout: float = 60) -> None:
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    with engine.connect() as conn:
                        conn.execute(sa.text("SELECT 1"))
                        return
                except sa.exc.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            engine.dispose()

    def stop(self) -> None:
        if self.started_here:
            self.started_here = False
            self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "fast", "-w", timeout=120)

    def version(self) -> str:
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text("SHOW server_version")).scalar_one()
        finally:
            engine.dispose()

    def databases(self) -> set[str]:
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                return set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
        finally:
            engine.dispose()

    def admin(self, *statements: str) -> None:
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for statement in statements:
                    conn.execute(sa.text(statement))
        finally:
            engine.dispose()


class ExternalPostgres:
    """An existing server, given by an admin URL (demo_<n> databases are created there)."""

    def __init__(self, admin_url: str):
        from sqlalchemy.engine import make_url

        self._url = make_url(admin_url).set(drivername="postgresql+psycopg")
        self.url = self._url.render_as_string(hide_password=False)

    def database_url(self, name: str) -> str:
        return self._url.set(database=name).render_as_string(hide_password=False)

    def databases(self) -> set[str]:
        return PersistentPostgres.databases(self)

    def admin(self, *statements: str) -> None:
        PersistentPostgres.admin(self, *statements)

    def version(self) -> str:
        return PersistentPostgres.version(self)

    def stop(self) -> None:
        pass

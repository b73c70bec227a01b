"""pytest plugin: a PostgreSQL server for the tests.

Fixtures
--------
``postgres_server`` (session): admin SQLAlchemy URL (str), ``postgresql+psycopg://...``.
    Taken from the env var ``AQUEDUCT_TEST_PG_URL`` when set; otherwise a throwaway
    server is initdb'd into a fresh temp dir, started on 127.0.0.1 on a free port
    (trust auth, fsync off) and stopped and deleted at the end of the session.
    When no server can be had the tests fail if ``CI`` is set, else they are skipped.

``fresh_postgres_database`` (function): a callable ``make(name_prefix="t") -> url``
    that creates a new, empty database on that server and returns its URL.
    All databases made this way are dropped at the end of the test (open
    connections to them are terminated first).

Tests using these fixtures get the ``postgres`` marker automatically.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.support import unavailable

ENV_URL = "AQUEDUCT_TEST_PG_URL"
ENV_BINDIR = "AQUEDUCT_TEST_PG_BINDIR"
TMP_PREFIX = "aqueduct-pg-"
OWNER_FILE = "owner.pid"  # pid of the pytest process that started the server

_startup_info: dict[str, object] = {}


def normalize_url(url: str) -> str:
    """Make any postgres URL use the psycopg (3) driver."""
    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


# --------------------------------------------------------------------------
# Throwaway server
# --------------------------------------------------------------------------


def find_pg_bindir() -> Path | None:
    """Directory holding initdb, pg_ctl and postgres, or None."""
    candidates: list[str] = []
    if os.environ.get(ENV_BINDIR):
        candidates.append(os.environ[ENV_BINDIR])
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            if out:
                candidates.append(out)
        except (OSError, subprocess.SubprocessError):
            pass

    def version_key(path: str):
        m = re.search(r"/(\d+)/bin$", path)
        return int(m.group(1)) if m else 0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for c in candidates:
        d = Path(c)
        if all((d / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.pop("LANG", None)
    return env


class ThrowawayPostgres:
    """A PostgreSQL server in a temp dir, owned by `postgres` when we are root."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.run_as: str | None = None
        self.tmpdir: Path | None = None
        self.port: int | None = None
        self.started = False

    # -- helpers -----------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return cmd

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            self._cmd(*args),
            cwd=self.tmpdir,  # the server user must be able to enter the cwd
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    @property
    def datadir(self) -> Path:
        assert self.tmpdir
        return self.tmpdir / "data"

    @property
    def logfile(self) -> Path:
        assert self.tmpdir
        return self.tmpdir / "server.log"

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """initdb + start; raises RuntimeError with details on failure."""
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: drop to an unprivileged user.
            if shutil.which("runuser") is None:
                raise RuntimeError("running as root but `runuser` is not available")
            for user in ("postgres", "nobody"):
                try:
                    pw = pwd.getpwnam(user)
                except KeyError:
                    continue
                self.run_as = user
                uid, gid = pw.pw_uid, pw.pw_gid
                break
            else:
                raise RuntimeError("running as root and no `postgres` user to run the server as")
            base = "/tmp"  # reachable by the server user, and short (unix socket path limit)
        else:
            base = tempfile.gettempdir()
            if len(base) > 60:
                base = "/tmp"

        self.tmpdir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=base))
        if self.run_as:
            os.chown(self.tmpdir, uid, gid)
        self.tmpdir.chmod(0o700)
        (self.tmpdir / OWNER_FILE).write_text(str(os.getpid()))

        r = self._run(
            "initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

        last_error = ""
        for _attempt in range(3):  # the free port may be taken by someone else meanwhile
            self.port = free_port()
            conf = (
                "\n# aqueduct-usage test server\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.tmpdir}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_connections = 200\n"
                "shared_buffers = 64MB\n"
                "max_wal_size = 1GB\n"
                "log_min_messages = warning\n"
                "timezone = 'UTC'\n"
            )
            # postgresql.auto.conf is read last: our settings win on each retry.
            (self.datadir / "postgresql.auto.conf").write_text(conf)
            self.started = True  # from here on, stop() tries pg_ctl stop
            r = self._run(
                "pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile),
                "-w", "-t", "60", timeout=90,
            )
            if r.returncode == 0:
                return
            last_error = f"pg_ctl start failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n" \
                         f"server log:\n{self.log_tail()}"
            if "already in use" not in self.log_tail():
                break
        raise RuntimeError(last_error)

    def pause(self) -> None:
        """Shut the server down (fast: open sessions are ended), keeping its data for `resume`."""
        r = self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "fast", "-w", timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

    def resume(self) -> None:
        """Start a paused server again, on the same port (the log keeps the server's output,
        which would otherwise hold our pipe open)."""
        r = self._run("pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60",
                      timeout=90)
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed ({r.returncode}):\n{r.stderr}\nserver log:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.started:
            self.started = False
            try:
                self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate", "-w",
                          timeout=60)
            except (OSError, subprocess.SubprocessError):
                pass
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_servers(bindir: Path) -> None:
    """Stop and delete servers left behind by killed test sessions (no teardown ran)."""
    bases = {"/tmp", tempfile.gettempdir()}
    for base in bases:
        for d in glob.glob(os.path.join(base, TMP_PREFIX + "*")):
            d = Path(d)
            try:
                pid = int((d / OWNER_FILE).read_text().strip())
            except (OSError, ValueError):
                continue  # not ours or half-made: leave it
            if _pid_alive(pid):
                continue
            stale = ThrowawayPostgres(bindir)
            stale.tmpdir = d
            if os.geteuid() == 0 and d.stat().st_uid != 0:
                try:
                    stale.run_as = pwd.getpwuid(d.stat().st_uid).pw_name
                except KeyError:
                    pass
            stale.started = (d / "data" / "postmaster.pid").exists()
            stale.stop()


def _wait_connectable(url: str, timeout: float = 30.0) -> str:
    """Connect once; return server_version."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with engine.connect() as conn:
                    return conn.execute(sa.text("SHOW server_version")).scalar_one()
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        engine.dispose()


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """Admin SQLAlchemy URL (str) of a PostgreSQL server for this test session."""
    external = os.environ.get(ENV_URL, "").strip()
    if external:
        url = normalize_url(external)
        try:
            version = _wait_connectable(url, timeout=10)
        except Exception as exc:  # noqa: BLE001
            unavailable(f"{ENV_URL} is set but the server cannot be reached: {exc}")
        _startup_info.update(kind="external", version=version)
        yield url
        return

    bindir = find_pg_bindir()
    if bindir is None:
        unavailable(
            "no PostgreSQL server binaries found (looked at pg_config --bindir, "
            "/usr/lib/postgresql/*/bin, PATH): install the Debian package `postgresql` "
            f"(scripts/ensure-system-packages) or set {ENV_URL}"
        )

    try:
        sweep_stale_servers(bindir)
    except Exception:  # noqa: BLE001 - best effort
        pass
    server = ThrowawayPostgres(bindir)
    atexit.register(server.stop)  # in case the session is torn down abnormally
    t0 = time.perf_counter()
    try:
        server.start()
        version = _wait_connectable(server.url)
    except Exception as exc:  # noqa: BLE001
        server.stop()
        unavailable(f"could not start a throwaway PostgreSQL server from {bindir}: {exc}")
    _startup_info.update(
        kind="throwaway", version=version, seconds=time.perf_counter() - t0,
        bindir=str(bindir), port=server.port,
    )
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _postgres_admin_engine(postgres_server):
    engine = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()


_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


@pytest.fixture
def fresh_postgres_database(postgres_server, _postgres_admin_engine):
    """Callable ``make(name_prefix="t") -> url``: a new, empty database per call."""
    created: list[str] = []
    admin = _postgres_admin_engine

    def make(name_prefix: str = "t") -> str:
        if not _PREFIX_RE.match(name_prefix):
            raise ValueError(f"bad database name prefix {name_prefix!r}: use [a-z][a-z0-9_]*")
        name = f"{name_prefix}_{uuid.uuid4().hex[:16]}"
        with admin.connect() as conn:
            # template0: nobody can be connected to it or have changed it.
            # FILE_COPY (PG 15+) is quicker than the default WAL_LOG with fsync off.
            strategy = " STRATEGY FILE_COPY" if conn.dialect.server_version_info >= (15,) else ""
            conn.execute(sa.text(
                f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'{strategy}'
            ))
        created.append(name)
        return make_url(postgres_server).set(database=name).render_as_string(hide_password=False)

    yield make

    errors = []
    with admin.connect() as conn:
        for name in created:
            try:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
                force = " WITH (FORCE)" if conn.dialect.server_version_info >= (13,) else ""
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"{force}'))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{name}: {exc}")
    if errors:
        pytest.fail("could not drop test databases:\n" + "\n".join(errors), pytrace=False)


# --------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------

_PG_FIXTURES = {"postgres_server", "fresh_postgres_database"}


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def pytest_terminal_summary(terminalreporter):
    info = _startup_info
    if not info:
        return
    if info.get("kind") == "throwaway":
        terminalreporter.write_line(
            f"postgres: throwaway server {info['version']} ({info['bindir']}, "
            f"port {info['port']}) started in {info['seconds']:.2f} s"
        )
    else:
        terminalreporter.write_line(f"postgres: external server {info['version']} ({ENV_URL})")

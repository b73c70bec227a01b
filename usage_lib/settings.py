"""Where the data is, who is looking, and the view a page opens with: `Settings`.

One object for every part that runs the dashboard: `usage-dashboard serve` writes it into
the environment of Voila and its kernels (`to_env`), the served notebook reads it back
(`from_env`), PDF/PNG capture and the tests do the same. The environment variables are
named here and nowhere else.

`Selection` (core) says *what* to look at (org, span, token, top, and the instant and
clock); `Settings` says *where* (database, router config) and *as whom* (identity).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Mapping

from usage_lib.core.health import Health, compute_health
from usage_lib.core.prices import PriceBook, load_price_book
from usage_lib.core.spans import zone
from usage_lib.core.usage import Selection, Usage, compute_usage, find_viewer
from usage_lib.demo import DEMO_ADMIN_EMAIL, demo_paths
from usage_lib.errors import UsageError
from usage_lib.gateway.db import Database, database_url, open_database
from usage_lib.gateway.routerconfig import load_request_multipliers, load_router_config
from usage_lib.history.archive import Archive, open_archive
from usage_lib.history.slices import parse_duration
from usage_lib.history.store import open_store
from usage_lib.history.sync import DEFAULT_RETENTION, DEFAULT_SETTLE, SyncResult, sync

ENV_DB_URL = "AQUEDUCT_DB_URL"
ENV_ROUTER_CONFIG = "AQUEDUCT_ROUTER_CONFIG"
ENV_TZ = "AQUEDUCT_TZ"
ENV_NOW = "AQUEDUCT_NOW"
ENV_IDENTITY = "AQUEDUCT_IDENTITY"
ENV_IDENTITY_HEADER = "AQUEDUCT_IDENTITY_HEADER"
ENV_VIEWER = "AQUEDUCT_VIEWER"
ENV_DEMO = "AQUEDUCT_DEMO"
ENV_ARCHIVE_URL = "AQUEDUCT_ARCHIVE_URL"
ENV_PRICES = "AQUEDUCT_PRICES"
ENV_STATEMENT_TIMEOUT = "AQUEDUCT_STATEMENT_TIMEOUT"
#: "1": `serve`'s background sync also archives health (`sync --health`).
ENV_ARCHIVE_HEALTH = "AQUEDUCT_ARCHIVE_HEALTH"
#: Not `Settings` fields (they tune the server, not a page): passed on to Voila and its
#: kernels as they are. How long a kernel idles (its page closed without saying so, or
#: gone) before Voila culls it, e.g. "30s" (unset: 10 minutes; voila_process.culling).
ENV_KERNEL_IDLE_TIMEOUT = "AQUEDUCT_KERNEL_IDLE_TIMEOUT"
#: The level of the package's log in the server's output (page.log_to_server; unset:
#: INFO). DEBUG adds one line per refresh: its times and its gateway statements.
ENV_LOG_LEVEL = "AQUEDUCT_LOG_LEVEL"
#: Every variable `to_env` owns (and so removes when a setting is unset).
ENV_NAMES = (ENV_DB_URL, ENV_ROUTER_CONFIG, ENV_TZ, ENV_NOW, ENV_IDENTITY, ENV_IDENTITY_HEADER, ENV_VIEWER, ENV_DEMO,
             ENV_ARCHIVE_URL, ENV_PRICES, ENV_STATEMENT_TIMEOUT, ENV_ARCHIVE_HEALTH)

#: How long one statement of a refresh or report may run on the gateway database
#: before it is cancelled and the page says so (far longer than one should take).
DEFAULT_STATEMENT_TIMEOUT = timedelta(seconds=30)

IDENTITY_MODES = ("header", "jupyterhub", "fixed")
DEFAULT_IDENTITY_HEADER = "X-Forwarded-Email"

#: The demo database `make serve` builds, relative to the working directory.
DEMO_DB = Path("demo") / "demo.sqlite3"


@dataclass(frozen=True)
class Settings:
    """Where the data is and who is looking (see the module docstring).

    `view` holds the time zone and as-of instant every selection of this page uses (and,
    on a served page, what its URL asks for). `problems` are configuration mistakes found
    by `from_env`, which the page shows instead of figures.
    """

    db_url: str
    router_config: Path | None = None
    #: Who is looking: "fixed" (`viewer`), "header" (a proxy's header) or "jupyterhub".
    identity: str = "fixed"
    identity_header: str = DEFAULT_IDENTITY_HEADER
    viewer: str | None = None
    view: Selection = field(default_factory=Selection)
    #: The built-in demo database: an unset viewer is the demo's global admin.
    demo: bool = False
    problems: tuple[str, ...] = ()
    #: The usage archive (docs/history.md) to read settled history from; None: the
    #: gateway alone.
    archive_url: str | None = None
    #: Syncs (`sync`) also archive health histograms (docs/history.md: opt-in, slower).
    #: Reading does not depend on it: an archive says itself whether it keeps health.
    archive_health: bool = False
    #: A prices file (`usage_lib.core.prices`) overriding the router config's prices.
    prices_file: Path | None = None
    #: How long one statement on the gateway database may run (None: no limit).
    statement_timeout: timedelta | None = DEFAULT_STATEMENT_TIMEOUT

    def __post_init__(self) -> None:
        # A plain SQLite path becomes a URL naming the same file from any directory
        # (a kernel runs elsewhere); a router config given as text becomes a path.
        object.__setattr__(self, "db_url", database_url(self.db_url))
        if self.archive_url:
            object.__setattr__(self, "archive_url", database_url(self.archive_url))
        if self.router_config is not None:
            object.__setattr__(self, "router_config", Path(self.router_config))
        if self.prices_file is not None:
            object.__setattr__(self, "prices_file", Path(self.prices_file))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        """Settings from environment variables; never raises (mistakes go to `problems`).

        An unset database URL means the demo database (``demo/demo.sqlite3`` under the
        working directory or its parent) and its router config.
        """
        problems: list[str] = []
        raw_url = env.get(ENV_DB_URL, "").strip()
        router = Path(env[ENV_ROUTER_CONFIG]) if env.get(ENV_ROUTER_CONFIG, "").strip() else None
        demo = not raw_url or env.get(ENV_DEMO) == "1"
        if raw_url:
            url = raw_url
        else:
            demo_db = default_demo_db()
            url, demo_router = demo_paths(demo_db.resolve())
            router = router or demo_router
            if not demo_db.exists():
                problems.append(f"demo database not found at {demo_db}: run `usage-dashboard demo` (or `make serve`) first")
        identity = env.get(ENV_IDENTITY, "").strip().lower() or "fixed"
        if identity not in IDENTITY_MODES:
            problems.append(f"{ENV_IDENTITY} must be one of {', '.join(IDENTITY_MODES)}, not {identity!r}")
        now = None
        if env.get(ENV_NOW, "").strip():
            try:
                now = datetime.fromisoformat(env[ENV_NOW].strip())
            except ValueError:
                problems.append(f"{ENV_NOW} is not an ISO 8601 time: {env[ENV_NOW]!r}")
        viewer = env.get(ENV_VIEWER, "").strip() or (DEMO_ADMIN_EMAIL if demo else None)
        archive_health = env.get(ENV_ARCHIVE_HEALTH, "").strip().lower()
        if archive_health not in ("", "0", "1"):
            problems.append(f"{ENV_ARCHIVE_HEALTH} must be 1 or 0, not {env[ENV_ARCHIVE_HEALTH]!r}")
        statement_timeout = DEFAULT_STATEMENT_TIMEOUT
        if env.get(ENV_STATEMENT_TIMEOUT, "").strip():
            try:
                statement_timeout = parse_statement_timeout(env[ENV_STATEMENT_TIMEOUT], ENV_STATEMENT_TIMEOUT)
            except UsageError as exc:
                problems.append(str(exc))
        return cls(
            db_url=url,
            router_config=router,
            identity=identity,
            identity_header=env.get(ENV_IDENTITY_HEADER, "").strip() or DEFAULT_IDENTITY_HEADER,
            viewer=viewer,
            view=Selection(tz=env.get(ENV_TZ, "").strip() or "UTC", now=now),
            demo=demo,
            problems=tuple(problems),
            archive_url=env.get(ENV_ARCHIVE_URL, "").strip() or None,
            archive_health=archive_health == "1",
            prices_file=Path(env[ENV_PRICES]) if env.get(ENV_PRICES, "").strip() else None,
            statement_timeout=statement_timeout,
        )

    def to_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (e.g. `os.environ`) with this object's variables set, and those it leaves
        unset removed, so that `Settings.from_env(settings.to_env(...))` gives it back."""
        env = {key: value for key, value in (base or {}).items() if key not in ENV_NAMES}
        values = {
            ENV_DB_URL: self.db_url,
            ENV_ROUTER_CONFIG: str(self.router_config.resolve()) if self.router_config else None,
            ENV_TZ: self.view.tz,
            ENV_NOW: self._aware_now().isoformat() if self.view.now is not None else None,
            ENV_IDENTITY: self.identity,
            ENV_IDENTITY_HEADER: self.identity_header if self.identity == "header" else None,
            ENV_VIEWER: self.viewer,
            ENV_DEMO: "1" if self.demo else None,
            ENV_ARCHIVE_URL: self.archive_url,
            ENV_ARCHIVE_HEALTH: "1" if self.archive_health else None,
            ENV_PRICES: str(self.prices_file.resolve()) if self.prices_file else None,
            ENV_STATEMENT_TIMEOUT: f"{self.statement_timeout.total_seconds():g}s" if self.statement_timeout else "0",
        }
        env.update({key: value for key, value in values.items() if value is not None})
        return env

    def _aware_now(self) -> datetime:
        now = self.view.now
        return now if now.tzinfo is not None else now.replace(tzinfo=zone(self.view.tz))

    def select(self, **changes) -> Selection:
        """`view` with some of org, span, token or top changed: a selection on this page's
        clock (time zone and as-of instant)."""
        return dataclasses.replace(self.view, **changes)

    def check(self) -> None:
        """Raise `UsageError` (one line) unless the database opens, the router config
        loads, the zone exists and a fixed viewer is a gateway user who may look: what a
        server checks before it starts, rather than on every page."""
        if self.problems:
            raise UsageError("; ".join(self.problems))
        if self.identity == "fixed" and not self.viewer:
            raise UsageError(f"who is looking? give --viewer EMAIL_OR_USERNAME (or {ENV_VIEWER}), "
                             f"or set {ENV_IDENTITY}=header|jupyterhub")
        self.models()
        self.prices()
        zone(self.view.tz)
        db = self.open_database()
        try:
            if self.identity == "fixed":
                find_viewer(db, self.viewer)
        finally:
            db.close()
        if self.archive_url:
            self.archive().close()

    def archive(self) -> Archive | None:
        """The usage archive opened for reading (None without one); `UsageError` if it
        cannot be read (missing: run `sync` first)."""
        return open_archive(self.archive_url) if self.archive_url else None

    def open_database(self) -> Database:
        """The gateway database, read-only, no statement running past the statement timeout."""
        timeout = self.statement_timeout.total_seconds() if self.statement_timeout else None
        return open_database(self.db_url, statement_timeout=timeout)

    def sync(self, now: datetime | None = None, settle: timedelta = DEFAULT_SETTLE,
             retention: timedelta = DEFAULT_RETENTION, wait: bool = False, progress: bool = False,
             health: bool | None = None) -> SyncResult:
        """Bring the archive up to date with the gateway's settled usage (creating it on
        the first run): see `usage_lib.history.sync.sync`; `health` (default
        `archive_health`) also archives health. No statement timeout: a sync streams a
        day of rows at a time in the background, and no page waits for it."""
        if not self.archive_url:
            raise UsageError("no archive: give --archive URL (an SQLite file or a PostgreSQL URL)")
        db = open_database(self.db_url)
        try:
            store = open_store(self.archive_url, writable=True)
            try:
                return sync(db, store, now=now, settle=settle, retention=retention, wait=wait, progress=progress,
                            health=self.archive_health if health is None else health)
            finally:
                store.close()
        finally:
            db.close()

    def models(self) -> tuple[str, ...] | None:
        """The router config's model names; None without one (every request counts)."""
        return load_router_config(self.router_config) if self.router_config else None

    def prices(self) -> PriceBook:
        """The models' prices: the router config's, overridden by the prices file."""
        return load_price_book(self.router_config, self.prices_file)

    def multipliers(self) -> dict[str, float]:
        """The router config's per-model request-limit multipliers (none without one)."""
        return load_request_multipliers(self.router_config) if self.router_config else {}

    def compute_health(self, selection: Selection | None = None, viewer: str | None = None) -> Health:
        """The health figures of one view (`compute`'s defaults), through the archive
        when there is one."""
        selection = selection or self.view
        viewer = viewer or self.viewer
        if not viewer:
            raise UsageError(f"no viewer: give one, or set {ENV_VIEWER}")
        models, multipliers = self.models(), self.multipliers()
        db = self.open_database()
        try:
            archive = self.archive()
            try:
                return compute_health(db, viewer, selection, models=models, multipliers=multipliers, archive=archive)
            finally:
                if archive is not None:
                    archive.close()
        finally:
            db.close()

    def compute(self, selection: Selection | None = None, viewer: str | None = None) -> Usage:
        """One view in one call: open the database, compute, close.

        `selection` defaults to `view` (see `select`); `viewer` to the fixed viewer.
        """
        selection = selection or self.view
        viewer = viewer or self.viewer
        if not viewer:
            raise UsageError(f"no viewer: give one, or set {ENV_VIEWER}")
        models, prices = self.models(), self.prices()
        db = self.open_database()
        try:
            archive = self.archive()
            try:
                return compute_usage(db, viewer, selection, models=models, archive=archive, prices=prices)
            finally:
                if archive is not None:
                    archive.close()
        finally:
            db.close()


def parse_statement_timeout(text: str, what: str) -> timedelta | None:
    """A statement timeout as typed: '30s', '2m' or plain seconds; 0 is no limit.
    `UsageError` (naming `what`) if it is not a duration."""
    return parse_duration(text, what) or None


def default_demo_db() -> Path:
    """The demo database: ``demo/demo.sqlite3`` under the working directory, else under
    its parent (a notebook in ``notebooks/`` runs one level down)."""
    candidates = [DEMO_DB, Path("..") / DEMO_DB]
    return next((path for path in candidates if path.exists()), candidates[0])

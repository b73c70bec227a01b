"""Build tiny gateway databases by hand, on SQLite or PostgreSQL, for tests.

`GatewayBuilder` writes the gateway's tables (from `usage_lib.gateway.schema`) and lets a test
add orgs, teams, users, service accounts, tokens and requests in a few readable lines.
Orgs, teams and users (their profiles) take optional per-minute `limits`, e.g.
`{"requests_per_minute": 10}`; `limit_columns=False` makes a gateway without them.
Request timestamps are written as the gateway writes them: naive-UTC text on SQLite
(short form when the microsecond is 0, unless the test asks for the long form) and
timestamptz on PostgreSQL.

The `gateway_db` fixture is parametrised over both backends, so every test that uses
it runs on SQLite and on a real PostgreSQL server.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, text

from usage_lib.gateway import schema

GROUP_IDS = {"admin": 1, "org-admin": 2, "user": 3}


def django_text(moment: datetime, long_form: bool = False) -> str:
    utc = moment.astimezone(timezone.utc)
    base = utc.strftime("%Y-%m-%d %H:%M:%S")
    if utc.microsecond or long_form:
        return f"{base}.{utc.microsecond:06d}"
    return base


@dataclass
class GatewayBuilder:
    url: str
    user_id_column: bool = True
    limit_columns: bool = True
    processing_time_column: bool = True
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.engine = create_engine(self.url)
        self.backend = self.engine.dialect.name
        schema.metadata.create_all(self.engine)
        if not self.user_id_column:
            with self.engine.begin() as conn:
                if self.backend == "sqlite":
                    conn.execute(text("DROP INDEX management_request_user_id_idx"))
                conn.execute(text("ALTER TABLE management_request DROP COLUMN user_id"))
        if not self.limit_columns:
            with self.engine.begin() as conn:
                for table in schema.LIMIT_TABLES:
                    for column in schema.LIMIT_COLUMNS:
                        conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        if not self.processing_time_column:
            with self.engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE management_request DROP COLUMN {schema.PROCESSING_TIME_COLUMN}"))
        with self.engine.begin() as conn:
            conn.execute(insert(schema.auth_group), [{"id": i, "name": n} for n, i in GROUP_IDS.items()])
        self._profiles: dict[int, int] = {}
        self._request_ids = itertools.count(1)

    def _next(self) -> int:
        return next(self._ids)

    def _insert(self, table, **values) -> int:
        values.setdefault("id", self._next())
        with self.engine.begin() as conn:
            conn.execute(insert(table), [values])
        return values["id"]

    def org(self, name: str, limits: dict[str, int] | None = None) -> int:
        return self._insert(schema.management_org, name=name, **(limits or {}))

    def team(self, org: int, name: str, limits: dict[str, int] | None = None) -> int:
        return self._insert(schema.management_team, name=name, org_id=org, **(limits or {}))

    def user(
        self,
        username: str,
        email: str | None = None,
        *,
        role: str | None = "user",
        org: int | None = None,
        teams: dict[int, bool] | None = None,
        active: bool = True,
        extra_roles: tuple[str, ...] = (),
        limits: dict[str, int] | None = None,
    ) -> int:
        """A user; `org` None means no profile; `teams` maps team id to is_admin;
        `limits` are the profile's."""
        user_id = self._insert(
            schema.auth_user,
            username=username,
            email=email if email is not None else f"{username}@example.org",
            is_active=active,
        )
        for group in ((role,) if role else ()) + extra_roles:
            self._insert(schema.auth_user_groups, user_id=user_id, group_id=GROUP_IDS[group])
        if org is not None:
            profile = self._insert(schema.management_userprofile, user_id=user_id, org_id=org, **(limits or {}))
            self._profiles[user_id] = profile
            for team_id, is_admin in (teams or {}).items():
                self._insert(
                    schema.management_teammembership,
                    user_profile_id=profile,
                    team_id=team_id,
                    is_admin=is_admin,
                )
        return user_id

    def service_account(self, team: int, name: str) -> int:
        return self._insert(schema.management_serviceaccount, name=name, team_id=team)

    def token(self, owner: int, name: str, service_account: int | None = None) -> int:
        return self._insert(
            schema.management_token,
            name=name,
            user_id=owner,
            service_account_id=service_account,
            created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        )

    def request(
        self,
        token: int,
        at: datetime,
        *,
        model: str | None = "gpt-4o",
        path: str = "/v1/chat/completions",
        status: int | None = 200,
        ms: int | None = 100,
        input_tokens: int = 10,
        output_tokens: int = 5,
        user_id: str = "",
        processing_ms: int | None = None,
        long_form: bool = False,
        count: int = 1,
    ) -> None:
        """`count` identical requests made with `token` at `at`."""
        stamp = django_text(at, long_form) if self.backend == "sqlite" else at
        columns = {
            "token_id": token,
            "timestamp": stamp,
            "method": "POST",
            "path": path,
            "user_agent": "test",
            "model": model,
            "status_code": status,
            "response_time_ms": ms,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }
        if self.user_id_column:
            columns["user_id"] = user_id
        if self.processing_time_column:
            columns[schema.PROCESSING_TIME_COLUMN] = processing_ms
        names = ", ".join(["id", *columns])
        marks = ", ".join(f":{name}" for name in ["id", *columns])
        rows = [{"id": next(self._request_ids), **columns} for _ in range(count)]
        with self.engine.begin() as conn:
            conn.execute(text(f'INSERT INTO management_request ({names.replace("timestamp", chr(34) + "timestamp" + chr(34))}) VALUES ({marks})'), rows)

    def close(self) -> None:
        self.engine.dispose()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def gateway_db(request, tmp_path):
    """A factory making empty gateway databases on the parametrised backend."""
    made: list[GatewayBuilder] = []

    def make(**options) -> GatewayBuilder:
        if request.param == "sqlite":
            url = sqlite_url(tmp_path / f"gateway{len(made)}.sqlite3")
        else:
            url = request.getfixturevalue("fresh_postgres_database")()
        builder = GatewayBuilder(url, **options)
        made.append(builder)
        return builder

    yield make
    for builder in made:
        builder.close()


NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


@dataclass
class TinyOrg:
    """Ids of the tiny organisation built by `build_tiny_org` (see its docstring)."""

    url: str
    orgs: dict[str, int]
    teams: dict[str, int]
    users: dict[str, int]
    tokens: dict[str, int]


def build_tiny_org(g: GatewayBuilder, now: datetime = NOW) -> TinyOrg:
    """Two orgs with people, one empty org, and requests whose counts are powers of two.

    Acme: root (global admin), olga (org admin), ursula (user, team ML), uwe (user, no
    team), nadia (user with an empty email), norole (profile, no group).
    Beta: bert (user, team Bees). ghost: global admin without a profile. Empty: no users.
    Service accounts: ml-bot (team ML, Acme) whose token bert (Beta) created; bee-bot
    (team Bees, Beta). Tokens and their requests, one hour before `now`:

        urs      ursula's                     1
        uwe      uwe's                        2, plus 64 with user_id ursula's email,
                                              512 with it capitalised, 1024 with a
                                              trailing space
        ml-bot   service account, by bert     4
        bert     bert's                       8, plus 128 with ursula's email
        bee-bot  service account, by bert    16, plus 256 with ursula's email
        ghost    ghost's (no profile)        32

    A total is a sum of distinct powers of two, so it names exactly the requests counted.
    """
    orgs = {name: g.org(name) for name in ("Acme", "Beta", "Empty")}
    teams = {
        "ML": g.team(orgs["Acme"], "ML"),
        "Ops": g.team(orgs["Acme"], "Ops"),
        "Bees": g.team(orgs["Beta"], "Bees"),
    }
    users = {
        "root": g.user("root", role="admin", org=orgs["Acme"]),
        "olga": g.user("olga", role="org-admin", org=orgs["Acme"], teams={teams["Ops"]: True}),
        "ursula": g.user("ursula", role="user", org=orgs["Acme"], teams={teams["ML"]: False}),
        "uwe": g.user("uwe", role="user", org=orgs["Acme"]),
        "nadia": g.user("nadia", "", role="user", org=orgs["Acme"]),
        "norole": g.user("norole", role=None, org=orgs["Acme"]),
        "bert": g.user("bert", role="user", org=orgs["Beta"], teams={teams["Bees"]: True}),
        "ghost": g.user("ghost", role="admin", org=None),
    }
    ml_bot = g.service_account(teams["ML"], "ml-bot")
    bee_bot = g.service_account(teams["Bees"], "bee-bot")
    tokens = {
        "urs": g.token(users["ursula"], "urs"),
        "uwe": g.token(users["uwe"], "uwe"),
        "ml-bot": g.token(users["bert"], "ml-key", service_account=ml_bot),
        "bert": g.token(users["bert"], "bert"),
        "bee-bot": g.token(users["bert"], "bee-key", service_account=bee_bot),
        "ghost": g.token(users["ghost"], "ghost"),
    }
    at = now - timedelta(hours=1)
    ursula = "ursula@example.org"
    g.request(tokens["urs"], at, count=1)
    g.request(tokens["uwe"], at, count=2)
    g.request(tokens["uwe"], at, count=64, user_id=ursula)
    g.request(tokens["uwe"], at, count=512, user_id="Ursula@example.org")
    g.request(tokens["uwe"], at, count=1024, user_id=ursula + " ")
    g.request(tokens["ml-bot"], at, count=4)
    g.request(tokens["bert"], at, count=8)
    g.request(tokens["bert"], at, count=128, user_id=ursula)
    g.request(tokens["bee-bot"], at, count=16)
    g.request(tokens["bee-bot"], at, count=256, user_id=ursula)
    g.request(tokens["ghost"], at, count=32)
    return TinyOrg(url=g.url, orgs=orgs, teams=teams, users=users, tokens=tokens)

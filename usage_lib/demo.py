"""Demo data: a believable Aqueduct gateway database and its router configuration.

`build_demo(url, router_config)` creates the gateway tables of `usage_lib.gateway.schema`
(columns and indexes as in a real gateway) in an empty SQLite or PostgreSQL database,
fills them with the organisation below and two weeks of traffic ending at `now`, and
writes the gateway's router configuration (LiteLLM format) next to it. For a given
`seed` and `now` the content is always the same.

The organisation
----------------
Groups: ``admin`` (global admin), ``org-admin``, ``user``.

Orgs and teams (team -> service accounts):

- **Acme Research** (org 1): Platform -> ``platform-ci``; Research -> ``research-batch``,
  ``joint-benchmark``; Data Science -> ``ds-notebooks``.
- **Globex Labs** (org 2): Applied ML -> ``ml-pipeline``; Platform (same name as Acme's
  team) -> ``gx-gateway-probe``; Support Tools -> ``support-bot``.
- **Initech** (org 3): TPS Automation -> ``tps-reporter``.
- **Umbrella Partners** (org 4): no teams, no users, no traffic.

Users (email, groups, org, team memberships; * = team admin):

========================= ================= =========== ===================================
email                     groups            org         teams
========================= ================= =========== ===================================
root@gateway.example      (none)            no profile  -- superuser made from the command
                                                        line; owns token ``bootstrap``
admin@acme.example        admin             Acme        Platform*      (DEMO_ADMIN_EMAIL)
carol@acme.example        org-admin, user   Acme        Platform*      (DEMO_ORG_ADMIN_EMAIL)
dave@acme.example         user              Acme        Platform, Research* (DEMO_USER_EMAIL)
erin@acme.example         user              Acme        Research*, Data Science
frank@acme.example        user              Acme        Data Science*
grace@acme.example        user (inactive)   Acme        --  (only an expired, unused token)
hank@globex.example       org-admin         Globex      --
ivy@globex.example        user              Globex      Applied ML*
judy@globex.example       user              Globex      Applied ML, Platform*
ken@globex.example        user              Globex      Support Tools*
(empty email, "ops")      user              Globex      Support Tools
lou@initech.example       org-admin         Initech     --
milton@initech.example    user              Initech     TPS Automation
peter@initech.example     user              Initech     TPS Automation*
intern@initech.example    (none)            Initech     --  (no group: sees nothing)
========================= ================= =========== ===================================

Tokens (name, owner = creator, service account): personal tokens ``admin-laptop``,
``carol-dev``, ``dave-laptop``, ``default`` (erin) and ``default`` (frank: two tokens
share a name), ``grace-old`` (expired, unused), ``ivy-experiments``, ``judy``,
``ken-cli``, ``ken-old`` (unused), ``hank``, ``milton-stapler``, ``peter-tps``,
``intern-test``, ``ops-monitor`` and ``bootstrap`` (owner root, no profile).
Service-account tokens: ``ci`` (carol, platform-ci), ``batch`` (erin, research-batch),
``notebooks`` (frank, ds-notebooks), ``benchmark`` (ivy of **Globex**, for Acme's
``joint-benchmark``: the cross-org token, in the reach of both orgs),
``pipeline-prod`` (ivy, ml-pipeline), ``pipeline-staging`` (judy, ml-pipeline),
``probe`` (judy, gx-gateway-probe), ``support-bot`` (ken, support-bot),
``tps`` (peter, tps-reporter). The heaviest tokens are ``pipeline-prod``, ``batch``,
``ci``, ``support-bot`` and ``dave-laptop``.

Requests' ``user_id``: mostly empty; end-user ids (``u-0042``) from the pipeline and
the support bot; Acme users' emails on erin's ``default`` and on ``notebooks`` (both
carry ``dave@acme.example``, so the standard user Dave sees some requests of tokens
he neither owns nor reaches through a team), Globex emails (and once in a while
Dave's) on ``support-bot``; now and then their owner's email on personal tokens;
and a few near misses: ``Dave@acme.example``, ``dave@acme.example `` (trailing
space), ``KEN@globex.example``.

Models: the router configuration lists ``gpt-4o`` (twice: two deployments),
``gpt-4o-mini``, ``claude-3-5-sonnet``, ``llama-3.1-70b-instruct``, ``mistral-small``,
``text-embedding-3-small`` (embeddings) and ``gemini-1.5-pro`` (configured, never
used). Some requests name models outside it: ``GPT-4o``, ``claude-sonnet`` (an alias),
``gpt-4`` (retired), the empty string and, rarely, NULL. Every configured model has a
list price per token in the router config (`DEMO_PRICES`) except the self-hosted
``llama-3.1-70b-instruct``, so the cost figures show one unpriced model.

Traffic: office hours (Acme in Europe, Globex and Initech in America), quiet weekends,
round-the-clock service accounts, nightly batch jobs, slight growth over the two weeks,
and two bursts: ``batch`` embeddings about five hours before `now`, and ``benchmark``
about eight days before it (with many 429s). Failures are 4xx/5xx (and a few 399);
some status codes and response times are NULL. On SQLite timestamps are naive-UTC
text as Django writes it (about 5% without the fraction); on PostgreSQL timestamptz.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from usage_lib.gateway import schema

__all__ = [
    "DEMO_ADMIN_EMAIL",
    "DEMO_ORG_ADMIN_EMAIL",
    "DEMO_USER_EMAIL",
    "DemoDatabase",
    "build_demo",
    "demo_paths",
]

# --------------------------------------------------------------------------------------
# Who is who (see the module docstring)
# --------------------------------------------------------------------------------------

DEMO_ADMIN_EMAIL = "admin@acme.example"
DEMO_ORG_ADMIN_EMAIL = "carol@acme.example"
DEMO_USER_EMAIL = "dave@acme.example"
#: Globex's org admin and one of its standard users.
DEMO_OTHER_ORG_ADMIN_EMAIL = "hank@globex.example"
DEMO_OTHER_USER_EMAIL = "ivy@globex.example"
#: Username of the superuser without a profile (owner of token "bootstrap").
DEMO_NO_PROFILE_USERNAME = "root"
#: A user with a profile (Initech) but no group.
DEMO_NO_GROUP_EMAIL = "intern@initech.example"
#: Username of a Globex standard user whose email is empty.
DEMO_EMPTY_EMAIL_USERNAME = "ops"

DEMO_ORGS = ("Acme Research", "Globex Labs", "Initech", "Umbrella Partners")
#: The org without users (and without traffic).
DEMO_EMPTY_ORG = "Umbrella Partners"
#: Name of the service-account token created by a Globex user for an Acme team.
DEMO_CROSS_ORG_TOKEN = "benchmark"
#: Name shared by two tokens (erin's and frank's).
DEMO_SHARED_TOKEN_NAME = "default"

#: The router configuration's model names, in configuration order.
DEMO_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "claude-3-5-sonnet",
    "llama-3.1-70b-instruct",
    "mistral-small",
    "text-embedding-3-small",
    "gemini-1.5-pro",
)
DEMO_EMBEDDING_MODEL = "text-embedding-3-small"
DEMO_UNUSED_MODEL = "gemini-1.5-pro"
#: Per-token prices (input, output) in USD, as the router config carries them
#: (LiteLLM's `input_cost_per_token` / `output_cost_per_token` under `model_info`),
#: list prices of late 2024. YAML floats, as LiteLLM wants them; the dashboard reads
#: them back exactly (`routerconfig.parse_amount`).
DEMO_PRICES = {
    "gpt-4o": (2.5e-06, 1.0e-05),                  # $2.50 / $10 per million tokens
    "gpt-4o-mini": (1.5e-07, 6.0e-07),             # $0.15 / $0.60
    "claude-3-5-sonnet": (3.0e-06, 1.5e-05),       # $3 / $15
    "mistral-small": (2.0e-07, 6.0e-07),           # $0.20 / $0.60
    "text-embedding-3-small": (2.0e-08, 0.0),      # $0.02 / none (embeddings)
    "gemini-1.5-pro": (1.25e-06, 5.0e-06),         # $1.25 / $5
}
#: The one configured model without a price (self-hosted on vLLM): unpriced, not free.
DEMO_UNPRICED_MODEL = "llama-3.1-70b-instruct"
#: Request models outside the configuration (None is SQL NULL).
DEMO_OFF_CONFIG_MODELS = ("GPT-4o", "claude-sonnet", "gpt-4", "", None)

DEMO_PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/completions",
    "/v1/embeddings",
    "/v1/responses",
)

DAYS = 14

_ORGS = [(i + 1, name) for i, name in enumerate(DEMO_ORGS)]
_GROUPS = [(1, "admin"), (2, "org-admin"), (3, "user")]
_GROUP_ID = {name: gid for gid, name in _GROUPS}

# (id, name, org_id)
_TEAMS = [
    (1, "Platform", 1),
    (2, "Research", 1),
    (3, "Data Science", 1),
    (4, "Applied ML", 2),
    (5, "Platform", 2),
    (6, "Support Tools", 2),
    (7, "TPS Automation", 3),
]

# Per-minute limits (requests, input tokens, output tokens; None: none at that level), as
# the gateway keeps them on orgs, teams and profiles: Acme's and Globex's orgs, the
# Research team (its service accounts' tokens) and dave's profile, near enough to the
# demo's busiest minutes that the health view lists tokens near a limit.
_ORG_LIMITS = {1: (60, 50_000, None), 2: (20, None, 8_000)}
_TEAM_LIMITS = {2: (30, 40_000, None)}
_PROFILE_LIMITS = {4: (5, None, None)}  # by user id
_NO_LIMITS = (None, None, None)

# (id, username, email, is_active, groups, org_id or None, [(team_id, is_admin)])
_USERS = [
    (1, "root", "root@gateway.example", True, [], None, []),
    (2, "admin", DEMO_ADMIN_EMAIL, True, ["admin"], 1, [(1, True)]),
    (3, "carol", DEMO_ORG_ADMIN_EMAIL, True, ["org-admin", "user"], 1, [(1, True)]),
    (4, "dave", DEMO_USER_EMAIL, True, ["user"], 1, [(1, False), (2, True)]),
    (5, "erin", "erin@acme.example", True, ["user"], 1, [(2, True), (3, False)]),
    (6, "frank", "frank@acme.example", True, ["user"], 1, [(3, True)]),
    (7, "grace", "grace@acme.example", False, ["user"], 1, []),
    (8, "hank", DEMO_OTHER_ORG_ADMIN_EMAIL, True, ["org-admin"], 2, []),
    (9, "ivy", DEMO_OTHER_USER_EMAIL, True, ["user"], 2, [(4, True)]),
    (10, "judy", "judy@globex.example", True, ["user"], 2, [(4, False), (5, True)]),
    (11, "ken", "ken@globex.example", True, ["user"], 2, [(6, True)]),
    (12, "ops", "", True, ["user"], 2, [(6, False)]),
    (13, "lou", "lou@initech.example", True, ["org-admin"], 3, []),
    (14, "milton", "milton@initech.example", True, ["user"], 3, [(7, False)]),
    (15, "peter", "peter@initech.example", True, ["user"], 3, [(7, True)]),
    (16, "intern", DEMO_NO_GROUP_EMAIL, True, [], 3, []),
]

# (id, name, team_id)
_SERVICE_ACCOUNTS = [
    (1, "platform-ci", 1),
    (2, "research-batch", 2),
    (3, "ds-notebooks", 3),
    (4, "joint-benchmark", 2),
    (5, "ml-pipeline", 4),
    (6, "gx-gateway-probe", 5),
    (7, "support-bot", 6),
    (8, "tps-reporter", 7),
]

# Traffic profiles (daily/weekly rhythm), model mixes and user_id schemes per token.
_EU, _US, _FLAT, _NIGHTLY = range(4)
_CHAT, _MIXED, _EMBED, _BENCH, _PROBE = range(5)
_UID_NONE, _UID_PERSONAL, _UID_ACME, _UID_ENDUSERS, _UID_SUPPORT = range(5)

# (id, name, user_id, service_account_id, created days ago, expires in days or None,
#  weight, profile, mix, user_id scheme, user agent, ip address)
_TOKENS = [
    (1, "bootstrap", 1, None, 400, None, 0.3, _FLAT, _CHAT, _UID_NONE, "curl/8.5.0", None),
    (2, "admin-laptop", 2, None, 210, 155, 1.0, _EU, _CHAT, _UID_PERSONAL,
     "OpenAI/Python 1.54.3", "10.1.0.12"),
    (3, "carol-dev", 3, None, 180, None, 2.0, _EU, _CHAT, _UID_PERSONAL,
     "OpenAI/Python 1.54.3", "10.1.0.23"),
    (4, "dave-laptop", 4, None, 95, 270, 6.0, _EU, _CHAT, _UID_PERSONAL,
     "OpenAI/Python 1.51.0", "10.1.0.31"),
    (5, "default", 5, None, 120, None, 3.0, _EU, _MIXED, _UID_ACME,
     "python-httpx/0.27.0", "10.1.0.45"),
    (6, "default", 6, None, 60, None, 1.5, _EU, _CHAT, _UID_PERSONAL,
     "OpenAI/Python 1.54.3", "10.1.0.52"),
    (7, "grace-old", 7, None, 300, -30, 0.0, _EU, _CHAT, _UID_NONE, "curl/8.5.0", None),
    (8, "ivy-experiments", 9, None, 75, None, 2.0, _US, _CHAT, _UID_PERSONAL,
     "OpenAI/Python 1.54.3", "172.16.4.9"),
    (9, "judy", 10, None, 44, 320, 1.0, _US, _CHAT, _UID_PERSONAL,
     "LangChain/0.3.7", "172.16.4.17"),
    (10, "ken-cli", 11, None, 33, None, 0.8, _US, _CHAT, _UID_PERSONAL,
     "curl/8.5.0", "172.16.4.30"),
    (11, "hank", 8, None, 150, None, 0.5, _US, _CHAT, _UID_PERSONAL,
     "OpenAI/Python 1.51.0", "172.16.4.2"),
    (12, "milton-stapler", 14, None, 250, None, 0.6, _US, _CHAT, _UID_PERSONAL,
     "OpenAI/Node 4.71.1", "192.168.7.14"),
    (13, "peter-tps", 15, None, 90, 90, 1.0, _US, _CHAT, _UID_PERSONAL,
     "OpenAI/Python 1.54.3", "192.168.7.15"),
    (14, "intern-test", 16, None, 20, 10, 0.2, _US, _CHAT, _UID_NONE,
     "curl/8.5.0", "192.168.7.99"),
    (15, "ops-monitor", 12, None, 100, None, 0.4, _FLAT, _CHAT, _UID_NONE,
     "python-requests/2.32.3", "172.16.9.1"),
    (16, "ci", 3, 1, 200, None, 8.0, _EU, _CHAT, _UID_NONE,
     "OpenAI/Python 1.54.3", "10.1.8.200"),
    (17, "batch", 5, 2, 160, None, 10.0, _NIGHTLY, _EMBED, _UID_NONE,
     "python-httpx/0.27.0", "10.1.9.3"),
    (18, "notebooks", 6, 3, 130, None, 4.0, _EU, _MIXED, _UID_ACME,
     "OpenAI/Python 1.51.0", "10.1.9.40"),
    (19, DEMO_CROSS_ORG_TOKEN, 9, 4, 45, 45, 3.0, _FLAT, _BENCH, _UID_NONE,
     "python-httpx/0.27.0", "172.16.5.5"),
    (20, "pipeline-prod", 9, 5, 110, 250, 14.0, _FLAT, _MIXED, _UID_ENDUSERS,
     "OpenAI/Python 1.54.3", "172.16.5.21"),
    (21, "pipeline-staging", 10, 5, 110, None, 2.0, _US, _MIXED, _UID_ENDUSERS,
     "OpenAI/Python 1.54.3", "172.16.5.22"),
    (22, "probe", 10, 6, 300, None, 3.0, _FLAT, _PROBE, _UID_NONE,
     "aqueduct-probe/1.2", "172.16.5.2"),
    (23, "support-bot", 11, 7, 140, None, 7.0, _US, _CHAT, _UID_SUPPORT,
     "OpenAI/Node 4.71.1", "172.16.6.7"),
    (24, "tps", 15, 8, 230, None, 2.5, _US, _CHAT, _UID_NONE,
     "OpenAI/Python 1.40.0", "192.168.7.50"),
    (25, "ken-old", 11, None, 365, None, 0.0, _US, _CHAT, _UID_NONE, "curl/8.5.0", None),
]

# Model index -> name; 0..6 configured (DEMO_MODELS), then the ones outside the config.
_ALL_MODELS = DEMO_MODELS + DEMO_OFF_CONFIG_MODELS
_EMB = DEMO_MODELS.index(DEMO_EMBEDDING_MODEL)
_UNUSED = DEMO_MODELS.index(DEMO_UNUSED_MODEL)
_OFF = {name: len(DEMO_MODELS) + i for i, name in enumerate(DEMO_OFF_CONFIG_MODELS)}

# Mix -> weights over the configured models (gemini, index 6, is never drawn).
_MIXES = np.array(
    [
        # gpt-4o, mini, claude, llama, mistral, embedding, gemini
        [0.34, 0.30, 0.20, 0.08, 0.06, 0.02, 0.0],  # chat
        [0.20, 0.20, 0.10, 0.05, 0.05, 0.40, 0.0],  # mixed
        [0.05, 0.10, 0.0, 0.0, 0.0, 0.85, 0.0],  # embed
        [0.20, 0.20, 0.20, 0.20, 0.20, 0.0, 0.0],  # bench
        [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # probe
    ]
)
# Per configured model: time to first token (ms) and ms per output token.
_TTFT_MS = np.array([900.0, 420.0, 1100.0, 700.0, 300.0, 0.0, 900.0])
_MS_PER_TOKEN = np.array([13.0, 6.0, 16.0, 11.0, 5.0, 0.0, 12.0])

# (value, weight); _ENDUSER draws from the end-user id pool.
_ENDUSER = object()
_UID_SCHEMES: list[list[tuple[object, float]]] = [
    [("", 1.0)],
    [("", 0.97), ("<owner>", 0.03)],
    [
        ("", 0.50),
        (DEMO_USER_EMAIL, 0.17),
        ("erin@acme.example", 0.09),
        ("frank@acme.example", 0.08),
        (DEMO_ORG_ADMIN_EMAIL, 0.06),
        (DEMO_ADMIN_EMAIL, 0.04),
        ("grace@acme.example", 0.02),
        ("Dave@acme.example", 0.02),
        ("dave@acme.example ", 0.02),
    ],
    [("", 0.55), (_ENDUSER, 0.45)],
    [
        ("", 0.40),
        (_ENDUSER, 0.45),
        ("ken@globex.example", 0.05),
        ("judy@globex.example", 0.04),
        (DEMO_OTHER_USER_EMAIL, 0.03),
        (DEMO_USER_EMAIL, 0.02),
        ("KEN@globex.example", 0.01),
    ],
]

# Rare outcomes, as shares of all requests: (status code or None, share).
_RARE_STATUS = [
    (400, 0.010),
    (401, 0.003),
    (403, 0.001),
    (404, 0.002),
    (413, 0.001),
    (422, 0.002),
    (429, 0.010),
    (500, 0.004),
    (502, 0.003),
    (503, 0.003),
    (504, 0.002),
    (399, 0.0005),
    (None, 0.003),
]
_OFF_CONFIG_SHARE = {
    "GPT-4o": 0.005, "claude-sonnet": 0.003, "gpt-4": 0.002, "": 0.002, None: 0.0003,
}
_NULL_RESPONSE_TIME_SHARE = 0.002  # besides the NULL-status rows
_WHOLE_SECOND_SHARE = 0.05  # timestamps without a fraction

_CHUNK = 50_000

_REQUEST_COLUMNS = (
    "id",
    "token_id",
    "timestamp",
    "method",
    "path",
    "user_agent",
    "ip_address",
    "model",
    "status_code",
    "response_time_ms",
    "input_tokens",
    "output_tokens",
    "user_id",
)

_US_PER_S = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class DemoDatabase:
    """What `build_demo` wrote."""

    url: str  #: SQLAlchemy URL of the database written
    router_config: Path  #: path of the router configuration written
    requests: int  #: number of request rows
    now: datetime  #: aware UTC time the traffic ends at


def demo_paths(db_path: Path) -> tuple[str, Path]:
    """SQLite URL of `db_path` and the router config path beside it.

    ``demo/demo.sqlite3`` -> ``("sqlite:///demo/demo.sqlite3", demo/demo-router.yaml)``.
    """
    db_path = Path(db_path)
    return f"sqlite:///{db_path.as_posix()}", db_path.with_name(f"{db_path.stem}-router.yaml")


def build_demo(
    url: str,
    router_config: Path,
    *,
    requests: int = 20_000,
    seed: int = 7,
    now: datetime | None = None,
) -> DemoDatabase:
    """Create and fill a demo gateway database at `url`; write its router config.

    The database must not hold the gateway tables yet (ValueError otherwise); a SQLite
    file and its directory are created as needed. `now` (default: the current time;
    naive means UTC) is when the traffic ends. Same `seed` and `now`, same content.
    """
    if requests < 0:
        raise ValueError(f"requests must be >= 0, not {requests}")
    now = _utc(now if now is not None else datetime.now(timezone.utc))
    router_config = Path(router_config)

    sa_url = make_url(url)
    backend = sa_url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"demo databases are SQLite or PostgreSQL, not {backend!r}: {url}")
    if backend == "sqlite" and sa_url.database and sa_url.database != ":memory:":
        Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)

    rows = _generate_requests(requests, seed, now)

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        inspector = sa.inspect(engine)
        existing = [t for t in schema.metadata.tables if inspector.has_table(t)]
        if existing:
            where = sa_url.render_as_string(hide_password=True)
            raise ValueError(
                f"{where}: not an empty database, it already has gateway tables "
                f"({', '.join(existing)}); give a new file or database"
            )
        index_ddl = _create_tables(engine)
        if backend == "sqlite":
            _fill_sqlite(engine, now, rows, index_ddl)
        else:
            _fill_postgresql(engine, now, rows, index_ddl)
    finally:
        engine.dispose()

    router_config.parent.mkdir(parents=True, exist_ok=True)
    router_config.write_text(router_config_yaml(), encoding="utf-8")
    return DemoDatabase(url=url, router_config=router_config, requests=requests, now=now)


def router_config_yaml() -> str:
    """The demo gateway's router configuration (LiteLLM format)."""
    deployments = [
        ("gpt-4o", "azure/gpt-4o", "chat",
         {"api_base": "https://acme-swedencentral.openai.azure.com",
          "api_key": "os.environ/AZURE_API_KEY_SWEDEN", "api_version": "2024-08-01-preview"}),
        ("gpt-4o", "azure/gpt-4o", "chat",
         {"api_base": "https://acme-eastus2.openai.azure.com",
          "api_key": "os.environ/AZURE_API_KEY_EASTUS2", "api_version": "2024-08-01-preview"}),
        ("gpt-4o-mini", "openai/gpt-4o-mini", "chat", {"api_key": "os.environ/OPENAI_API_KEY"}),
        ("claude-3-5-sonnet", "anthropic/claude-3-5-sonnet-20241022", "chat",
         {"api_key": "os.environ/ANTHROPIC_API_KEY"}),
        ("llama-3.1-70b-instruct", "hosted_vllm/meta-llama/Llama-3.1-70B-Instruct", "chat",
         {"api_base": "http://vllm-llama.internal:8000/v1"}),
        ("mistral-small", "mistral/mistral-small-latest", "chat",
         {"api_key": "os.environ/MISTRAL_API_KEY"}),
        ("text-embedding-3-small", "openai/text-embedding-3-small", "embedding",
         {"api_key": "os.environ/OPENAI_API_KEY"}),
        ("gemini-1.5-pro", "vertex_ai/gemini-1.5-pro", "chat",
         {"vertex_project": "acme-ml", "vertex_location": "europe-west4"}),
    ]
    model_list = []
    for number, (name, model, mode, params) in enumerate(deployments, start=1):
        info = {"id": f"deployment-{number}", "mode": mode}
        if name in DEMO_PRICES:
            input_cost, output_cost = DEMO_PRICES[name]
            info.update(input_cost_per_token=input_cost, output_cost_per_token=output_cost)
        model_list.append(
            {
                "model_name": name,
                "litellm_params": {"model": model, **params},
                "model_info": info,
            }
        )
    header = (
        "# Router configuration of the demo Aqueduct gateway (LiteLLM format).\n"
        "# gpt-4o has two deployments (load balancing); gemini-1.5-pro is never used.\n"
        "# Prices are LiteLLM's custom pricing (USD per token, under model_info);\n"
        f"# {DEMO_UNPRICED_MODEL} (self-hosted) has none: the dashboard shows it as unpriced.\n"
    )
    body = yaml.safe_dump(
        {"model_list": model_list, "router_settings": {"routing_strategy": "simple-shuffle"}},
        sort_keys=False,
        default_flow_style=False,
    )
    return header + body


# --------------------------------------------------------------------------------------
# Generation (numpy, vectorised)
# --------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _smooth_window(hour: np.ndarray, start: float, end: float, edge: float = 0.6) -> np.ndarray:
    """~1 between start and end (hours of the day), ~0 outside, smooth edges."""
    rise = 1.0 / (1.0 + np.exp(-(hour - start) / edge))
    fall = 1.0 / (1.0 + np.exp(-(end - hour) / edge))
    return rise * fall


def _profile_weights(minute_starts: np.ndarray, start_us: int, now_us: int) -> np.ndarray:
    """Relative request rate per minute bin, one row per traffic profile."""
    seconds = minute_starts // _US_PER_S
    hour = (seconds % 86_400) / 3600.0
    weekday = ((seconds // 86_400) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weekend = weekday >= 5
    growth = 1.0 + 0.25 * (minute_starts - start_us) / max(now_us - start_us, 1)

    eu = _smooth_window(hour, 7.5, 17.5) * (1.0 - 0.3 * _smooth_window(hour, 11.6, 12.6, 0.3))
    eu = np.where(weekend, 0.12 * eu, eu) + 0.04
    us = _smooth_window(hour, 13.5, 22.5) + _smooth_window(hour, -1.5, 0.5)  # wraps midnight
    us = us * (1.0 - 0.25 * _smooth_window(hour, 17.0, 18.0, 0.3))
    us = np.where(weekend, 0.15 * us, us) + 0.05
    flat = 1.0 + 0.35 * np.sin((hour - 9.0) / 24.0 * 2 * np.pi)
    flat = np.where(weekend, 0.8 * flat, flat)
    nightly = 0.15 + 1.6 * _smooth_window(hour, 0.5, 4.5, 0.3)
    return np.vstack([eu, us, flat, nightly]) * growth


def _sample_minutes(rng, weights: np.ndarray, size: int) -> np.ndarray:
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    bins = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(bins, len(weights) - 1)


def _generate_requests(n: int, seed: int, now: datetime) -> dict[str, object]:
    """All request columns as numpy arrays (object arrays where NULLs occur), time-ordered."""
    rng = np.random.Generator(np.random.PCG64(seed))
    now_us = _micros(now)
    start_us = now_us - DAYS * 86_400 * _US_PER_S

    tok_ids = np.array([t[0] for t in _TOKENS])
    tok_weight = np.array([t[6] for t in _TOKENS], dtype=float)
    tok_profile = np.array([t[7] for t in _TOKENS])
    tok_mix = np.array([t[8] for t in _TOKENS])
    tok_scheme = np.array([t[9] for t in _TOKENS])
    by_name = {t[1]: i for i, t in reversed(list(enumerate(_TOKENS)))}

    # -- bursts: (token, share of rows, start before now (s), duration (s), models)
    bursts = [
        (by_name["batch"], 0.025, 5 * 3600, 45 * 60, _EMBED),
        (by_name[DEMO_CROSS_ORG_TOKEN], 0.02, 8 * 86_400 - 5 * 3600, 100 * 60, _BENCH),
    ]
    burst_sizes = [int(round(n * share)) if n >= 100 else 0 for _, share, *_ in bursts]
    n_base = n - sum(burst_sizes)

    # -- tokens and timestamps of the regular traffic
    tok = rng.choice(len(_TOKENS), size=n_base, p=tok_weight / tok_weight.sum())
    minute_starts = np.arange(start_us, now_us, 60 * _US_PER_S, dtype=np.int64)
    weights = _profile_weights(minute_starts, start_us, now_us)
    ts = np.empty(n_base, dtype=np.int64)
    for profile in range(weights.shape[0]):
        rows = np.flatnonzero(tok_profile[tok] == profile)
        bins = _sample_minutes(rng, weights[profile], rows.size)
        ts[rows] = minute_starts[bins] + rng.integers(0, 60 * _US_PER_S, size=rows.size)
    in_burst = np.zeros(n_base, dtype=bool)
    mix = tok_mix[tok]

    toks, tss, mixes, flags = [tok], [ts], [mix], [in_burst]
    for (btok, _share, before_s, duration_s, bmix), size in zip(bursts, burst_sizes):
        b_start = now_us - before_s * _US_PER_S
        # denser at the start of the burst, as a job that ramps down
        offsets = (rng.beta(1.0, 1.8, size=size) * duration_s * _US_PER_S).astype(np.int64)
        toks.append(np.full(size, btok))
        tss.append(b_start + offsets)
        mixes.append(np.full(size, bmix))
        flags.append(np.ones(size, dtype=bool))
    tok = np.concatenate(toks)
    ts = np.minimum(np.concatenate(tss), now_us)
    mix = np.concatenate(mixes)
    in_burst = np.concatenate(flags)

    # -- whole-second timestamps (Django then writes no fraction), then time order
    whole = rng.random(n) < _WHOLE_SECOND_SHARE
    ts[whole] -= ts[whole] % _US_PER_S
    order = np.argsort(ts, kind="stable")
    tok, ts, mix, in_burst = tok[order], ts[order], mix[order], in_burst[order]

    # -- models
    model = np.empty(n, dtype=np.int64)
    for m in range(len(_MIXES)):
        rows = np.flatnonzero(mix == m)
        model[rows] = rng.choice(len(DEMO_MODELS), size=rows.size, p=_MIXES[m])

    # Rare cases land on disjoint sets of regular (non-burst) rows: one shuffle, sliced.
    regular = np.flatnonzero(~in_burst & (mix != _PROBE))
    shuffled = rng.permutation(regular)
    cursor = 0

    def take(share: float) -> np.ndarray:
        nonlocal cursor
        k = int(round(n * share))
        if n >= 200:
            k = max(k, 1)
        k = min(k, shuffled.size - cursor)
        picked = np.sort(shuffled[cursor : cursor + k])
        cursor += k
        return picked

    off_rows = {name: take(share) for name, share in _OFF_CONFIG_SHARE.items()}
    for name, rows in off_rows.items():
        model[rows] = _OFF[name]
    status_rows = [(code, take(share)) for code, share in _RARE_STATUS]
    null_rt_rows = take(_NULL_RESPONSE_TIME_SHARE)

    # -- paths: embeddings for the embedding model, else a completion-style path
    embedding = model == _EMB
    chat_paths = np.array([0, 1, 2, 4])  # indexes into DEMO_PATHS
    path = chat_paths[
        np.searchsorted(np.cumsum([0.80, 0.07, 0.05, 0.08]), rng.random(n) * 0.99999, side="right")
    ]
    path[embedding] = DEMO_PATHS.index("/v1/embeddings")
    path[tok == by_name["probe"]] = 0

    # -- status codes
    status = np.full(n, 200, dtype=np.int64)
    null_status = np.zeros(n, dtype=bool)
    for code, rows in status_rows:
        if code is None:
            null_status[rows] = True
        else:
            status[rows] = code
    for name, rows in off_rows.items():
        if name == "" or name is None:
            status[rows] = np.where(rng.random(rows.size) < 0.8, 400, 422)
        else:  # some aliases resolve, others are unknown to the router
            status[rows] = np.where(rng.random(rows.size) < 0.55, 200, 404)
    limited = in_burst & (rng.random(n) < 0.15)
    status[limited] = 429
    ok = (status < 400) & ~null_status

    # -- tokens: realistic sizes, nothing counted for failures
    input_tokens = np.zeros(n, dtype=np.int64)
    output_tokens = np.zeros(n, dtype=np.int64)
    chat = ok & ~embedding
    emb = ok & embedding
    input_tokens[chat] = np.clip(rng.lognormal(np.log(650), 1.1, chat.sum()), 1, 128_000)
    output_tokens[chat] = np.clip(rng.lognormal(np.log(220), 0.9, chat.sum()), 1, 16_000)
    input_tokens[emb] = np.clip(rng.lognormal(np.log(320), 1.0, emb.sum()), 1, 8191)
    probe = ok & (tok == by_name["probe"])
    input_tokens[probe] = rng.integers(8, 16, probe.sum())
    output_tokens[probe] = rng.integers(1, 6, probe.sum())

    # -- response times (ms)
    configured = np.minimum(model, len(DEMO_MODELS) - 1)  # off-config: priced like gemini
    noise = rng.lognormal(0.0, 0.35, n)
    rt = (_TTFT_MS[configured] + _MS_PER_TOKEN[configured] * output_tokens) * noise
    rt[emb] = (60.0 + input_tokens[emb] / 40.0) * noise[emb]
    client_error = (status >= 400) & (status < 500)
    rt[client_error] = rng.uniform(3, 60, client_error.sum())
    for code, low, high in ((500, 200, 3000), (502, 40, 600), (503, 5, 120), (504, 30_000, 60_000)):
        rows = status == code
        rt[rows] = rng.uniform(low, high, rows.sum())
    if n >= 200:  # the load-balanced deployments time out now and then
        rt[np.flatnonzero(chat)[::500]] *= 6
    rt = np.maximum(rt, 1.0).astype(np.int64)

    # -- user_id
    pool = np.array([f"u-{i:04d}" for i in np.sort(rng.choice(10_000, 400, replace=False))])
    pool_p = 1.0 / np.arange(1, pool.size + 1) ** 1.1
    pool_p /= pool_p.sum()
    owner_email = {t[0]: u[2] for t in _TOKENS for u in _USERS if u[0] == t[2]}
    user_id = np.full(n, "", dtype=object)
    scheme = tok_scheme[tok]
    for s, choices in enumerate(_UID_SCHEMES):
        rows = np.flatnonzero(scheme == s)
        if rows.size == 0 or len(choices) == 1:
            continue
        p = np.array([w for _, w in choices])
        picks = rng.choice(len(choices), size=rows.size, p=p / p.sum())
        for c, (value, _w) in enumerate(choices):
            hit = rows[picks == c]
            if value is _ENDUSER:
                user_id[hit] = pool[rng.choice(pool.size, size=hit.size, p=pool_p)]
            elif value == "<owner>":
                emails = np.array([owner_email[_TOKENS[t][0]] for t in range(len(_TOKENS))],
                                  dtype=object)
                user_id[hit] = emails[tok[hit]]
            elif value:
                user_id[hit] = value

    models = np.array(_ALL_MODELS, dtype=object)[model]
    status_obj = status.astype(object)
    status_obj[null_status] = None
    rt_obj = rt.astype(object)
    rt_obj[null_status] = None
    rt_obj[null_rt_rows] = None

    return {
        "token_id": tok_ids[tok],
        "token_index": tok,
        "timestamp_us": ts,
        "path": np.array(DEMO_PATHS, dtype=object)[path],
        "model": models,
        "status_code": status_obj,
        "response_time_ms": rt_obj,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "user_id": user_id,
    }


def _timestamp_text(micros: np.ndarray, *, django: bool) -> np.ndarray:
    """UTC timestamps as text, vectorised (datetime_as_string is several times slower).

    ``django=True``: naive text like Django writes on SQLite,
    ``YYYY-MM-DD HH:MM:SS.ffffff``, or ``YYYY-MM-DD HH:MM:SS`` when the microsecond
    is 0. Else ``YYYY-MM-DD HH:MM:SS.ffffff+00`` for PostgreSQL's COPY.
    """
    micros = np.asarray(micros, dtype=np.int64)
    days = micros // (86_400 * _US_PER_S)
    date = days.astype("datetime64[D]")
    year = date.astype("datetime64[Y]").astype(np.int64) + 1970
    if micros.size and (year.min() < 1 or year.max() > 9999):
        raise ValueError("timestamps out of range")
    month_start = date.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day = (date - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    of_day = micros - days * (86_400 * _US_PER_S)
    second, fraction = np.divmod(of_day, _US_PER_S)
    hour, second = np.divmod(second, 3600)
    minute, second = np.divmod(second, 60)

    width = 26 if django else 29
    chars = np.zeros((micros.size, width), dtype=np.uint32)

    def digits(column: int, values: np.ndarray, count: int) -> None:
        for k in range(count):
            chars[:, column + count - 1 - k] = 48 + (values // 10**k) % 10

    digits(0, year, 4)
    digits(5, month, 2)
    digits(8, day, 2)
    digits(11, hour, 2)
    digits(14, minute, 2)
    digits(17, second, 2)
    digits(20, fraction, 6)
    chars[:, [4, 7]] = ord("-")
    chars[:, 10] = ord(" ")
    chars[:, [13, 16]] = ord(":")
    chars[:, 19] = ord(".")
    if django:
        chars[fraction == 0, 19:] = 0  # numpy strips trailing NULs
    else:
        chars[:, 26:] = [ord("+"), ord("0"), ord("0")]
    return chars.view(f"<U{width}").reshape(-1)


def _django_scalar(moment: datetime) -> str:
    return _timestamp_text(np.array([_micros(moment)]), django=True)[0].item()


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _small_tables(now: datetime, aware: bool):
    """(table name, columns, rows) of everything but requests, parents first."""
    stamp = (lambda m: m) if aware else _django_scalar
    profiles = [(u[0], u[5]) for u in _USERS if u[5] is not None]
    profile_id = {user_id: i for i, (user_id, _org) in enumerate(profiles, start=1)}
    user_groups = [(u[0], _GROUP_ID[g]) for u in _USERS for g in u[4]]
    memberships = [(profile_id[u[0]], team, admin) for u in _USERS for team, admin in u[6]]
    tokens = []
    for t in _TOKENS:
        tid, name, owner, sa_id, created_days, expires_days = t[:6]
        created = now - timedelta(days=created_days, hours=tid % 7, minutes=13 * tid % 60,
                                  seconds=29 * tid % 60)
        if tid % 3 == 0:
            created = created.replace(microsecond=0)
        expires = None if expires_days is None else stamp(
            (now + timedelta(days=expires_days)).replace(hour=0, minute=0, second=0,
                                                         microsecond=0))
        tokens.append((tid, name, owner, sa_id, stamp(created), expires))
    return [
        ("auth_group", ("id", "name"), _GROUPS),
        ("auth_user", ("id", "username", "email", "is_active"),
         [(u[0], u[1], u[2], u[3]) for u in _USERS]),
        ("auth_user_groups", ("id", "user_id", "group_id"),
         [(i, uid, gid) for i, (uid, gid) in enumerate(user_groups, start=1)]),
        ("management_org", ("id", "name", *schema.LIMIT_COLUMNS),
         [(oid, name, *_ORG_LIMITS.get(oid, _NO_LIMITS)) for oid, name in _ORGS]),
        ("management_team", ("id", "name", "org_id", *schema.LIMIT_COLUMNS),
         [(*team, *_TEAM_LIMITS.get(team[0], _NO_LIMITS)) for team in _TEAMS]),
        ("management_userprofile", ("id", "user_id", "org_id", *schema.LIMIT_COLUMNS),
         [(profile_id[uid], uid, org, *_PROFILE_LIMITS.get(uid, _NO_LIMITS)) for uid, org in profiles]),
        ("management_teammembership", ("id", "user_profile_id", "team_id", "is_admin"),
         [(i, *m) for i, m in enumerate(memberships, start=1)]),
        ("management_serviceaccount", ("id", "name", "team_id"), _SERVICE_ACCOUNTS),
        ("management_token",
         ("id", "name", "user_id", "service_account_id", "created_at", "expires_at"), tokens),
    ]


def _request_chunks(rows: dict[str, object], *, django: bool):
    """Lists of request rows (tuples in `_REQUEST_COLUMNS` order), ids ascending with time."""
    n = rows["timestamp_us"].size
    agents = np.array([t[10] for t in _TOKENS], dtype=object)[rows["token_index"]]
    ips = np.array([t[11] for t in _TOKENS], dtype=object)[rows["token_index"]]
    after_method = (
        rows["path"],
        agents,
        ips,
        rows["model"],
        rows["status_code"],
        rows["response_time_ms"],
        rows["input_tokens"],
        rows["output_tokens"],
        rows["user_id"],
    )
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        yield list(
            zip(
                range(start + 1, stop + 1),
                rows["token_id"][start:stop].tolist(),
                _timestamp_text(rows["timestamp_us"][start:stop], django=django).tolist(),
                itertools.repeat("POST", stop - start),
                *(column[start:stop].tolist() for column in after_method),
            )
        )


def _insert_sql(table: str, columns, mark: str) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )


def _create_tables(engine) -> list[str]:
    """Create the gateway tables; return the request indexes' DDL, to run after the load.

    Everything comes from `usage_lib.gateway.schema.metadata`; only the indexes of
    `management_request` wait until its rows are in (a bulk load is much faster so).
    """
    request = schema.management_request
    schema.metadata.create_all(
        engine, tables=[t for t in schema.metadata.sorted_tables if t is not request]
    )
    with engine.begin() as conn:
        conn.execute(sa.schema.CreateTable(request))
    return [
        str(sa.schema.CreateIndex(index).compile(dialect=engine.dialect))
        for index in sorted(request.indexes, key=lambda index: index.name)
    ]


def _fill_sqlite(engine, now: datetime, rows: dict[str, object], index_ddl: list[str]) -> None:
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=OFF")
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA cache_size=-262144")  # 256 MiB, for building the indexes
        cur.execute("BEGIN")
        for table, columns, values in _small_tables(now, aware=False):
            cur.executemany(_insert_sql(table, columns, "?"), values)
        sql = _insert_sql("management_request", _REQUEST_COLUMNS, "?")
        for chunk in _request_chunks(rows, django=True):
            cur.executemany(sql, chunk)
        for ddl in index_ddl:
            cur.execute(ddl)
        conn.commit()
        cur.execute("ANALYZE")
        conn.commit()
        cur.close()
    finally:
        raw.close()


def _fill_postgresql(
    engine, now: datetime, rows: dict[str, object], index_ddl: list[str]
) -> None:
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute("SET maintenance_work_mem = '256MB'")  # for building the indexes
            for table, columns, values in _small_tables(now, aware=True):
                cur.executemany(_insert_sql(table, columns, "%s"), values)
            copy_sql = f"COPY management_request ({', '.join(_REQUEST_COLUMNS)}) FROM STDIN"
            with cur.copy(copy_sql) as copy:
                for chunk in _request_chunks(rows, django=False):
                    for row in chunk:
                        copy.write_row(row)
            for ddl in index_ddl:
                cur.execute(ddl)
            for table in schema.metadata.tables:  # explicit ids: move the sequences on
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("ANALYZE")
        conn.commit()
    finally:
        raw.close()

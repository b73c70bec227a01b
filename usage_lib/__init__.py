"""aqueduct-usage: the usage dashboard of the Aqueduct AI gateway, as a library.

The data flows one way, each layer importing only those before it:

- `gateway`: the gateway's database, read-only (schema, connection, router config);
- `core`: spans and buckets, who may see what (`access`), the three SQL statements of
  a refresh (`queries`), `compute_usage`, whose `Usage` holds every figure as
  pandas DataFrames (raw request rows never leave the database), and `compute_health`
  (latency percentiles, failures by kind, rate-limit headroom);
- `history`: the usage archive, settled history beyond the gateway's retention
  (`sync`, and `open_archive` for `compute_usage(..., archive=...)`);
- `demo`: a demo gateway database;
- `settings`: where the data is and who is looking (`Settings`, the environment);
- `render`: the figures written for people: labels, JSON/CSV/zip/text files, the
  offline HTML page;
- `ui`: the live page as ipywidgets (dashboard, charts, table, Export control);
- `serving`: the page served by Voila (identity, Voila process, PDF/PNG capture);
- `snapshot`: the `snapshot` command's exports; `cli`: the `usage-dashboard` command.

For an analysis in a notebook (see notebooks/analysis.ipynb)::

    from usage_lib import Settings
    settings = Settings(db_url="sqlite:///demo/demo.sqlite3", router_config="demo/demo-router.yaml",
                        viewer="admin@acme.example")
    usage = settings.compute(settings.select(org="all", span="1w"))
    usage.timeseries, usage.models, usage.top     # what the page shows
    usage.breakdown                              # requests per model, key and bucket
    health = settings.compute_health(settings.select(org="all", span="1d"))  # latency, failures
"""

from usage_lib.core.health import Health, compute_health
from usage_lib.core.usage import Selection, Usage, compute_usage
from usage_lib.errors import UsageError
from usage_lib.gateway.db import Database, open_database
from usage_lib.gateway.routerconfig import load_router_config
from usage_lib.history.archive import open_archive
from usage_lib.settings import Settings

__all__ = [
    "Database",
    "Health",
    "Selection",
    "Settings",
    "Usage",
    "UsageError",
    "compute_health",
    "compute_usage",
    "load_router_config",
    "open_archive",
    "open_database",
]

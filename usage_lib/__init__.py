"""aqueduct-usage: the usage dashboard of the Aqueduct AI gateway, as a library.

The flow is one way: configuration -> viewer and scope (`access`) -> SQL (`queries`)
-> result frames (`report`) -> widgets (`dashboard`) or files (`snapshot`).

For an analysis in a notebook::

    from usage_lib import open_database, load_router_config, compute_usage
    db = open_database("sqlite:///demo/demo.sqlite3")
    usage = compute_usage(db, viewer="admin@acme.example", models=load_router_config(path))
    usage.timeseries, usage.models, usage.top    # pandas DataFrames
"""

from usage_lib.errors import UsageError
from usage_lib.gateway.db import Database, open_database
from usage_lib.gateway.routerconfig import load_router_config
from usage_lib.core.usage import Selection, Usage, compute_usage

__all__ = [
    "Database",
    "Selection",
    "Usage",
    "UsageError",
    "compute_usage",
    "load_router_config",
    "open_database",
]

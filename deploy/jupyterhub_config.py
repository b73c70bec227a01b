# JupyterHub: each Hub user gets a single-user server that opens the usage dashboard in
# Voila, as themselves (AQUEDUCT_IDENTITY=jupyterhub matches the Hub user name to a
# gateway username or email).
#
# Mind the trust model: a single-user server runs the user's own kernels, and a user who
# can open JupyterLab or a terminal there can read anything the database URL can read.
# Use this for data teams you would give that access anyway; to put the dashboard in
# front of every user of an organisation, run one Voila behind an authenticating proxy
# in header mode (deploy/nginx-oauth2-proxy.conf).
#
# The Hub's environment needs aqueduct-usage installed (for the shared settings below);
# the single-user servers need it too, with voila.

from pathlib import Path

from usage_lib.serving.voila_process import NOTEBOOK, PAGE_OPTIONS, command_line, jupyter_path
from usage_lib.settings import ENV_DB_URL, ENV_IDENTITY, ENV_ROUTER_CONFIG, ENV_TZ

c = get_config()  # noqa: F821  (provided by JupyterHub)

# The served notebook ships inside the package.
c.Spawner.notebook_dir = str(NOTEBOOK.parent)
c.Spawner.default_url = f"/voila/render/{Path(NOTEBOOK).name}"
c.Spawner.environment = {
    ENV_IDENTITY: "jupyterhub",
    # A read-only database role; the dashboard also opens every session read-only.
    ENV_DB_URL: "postgresql://usage_ro@db.internal/aqueduct",
    ENV_ROUTER_CONFIG: "/etc/aqueduct/router.yaml",
    ENV_TZ: "Europe/Vienna",
    # The page's template (no CDN, kernels shut down when a page closes) ships in the package.
    "JUPYTER_PATH": jupyter_path(),
}
# Voila as a server extension of the single-user server, with the same template,
# hardening and kernel culling as `usage-dashboard serve` (voila_config/voila.py).
c.Spawner.args = command_line(PAGE_OPTIONS)

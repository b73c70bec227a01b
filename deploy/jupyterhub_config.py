# JupyterHub: each Hub user gets a single-user server that opens the usage dashboard in
# Voila, as themselves (AQUEDUCT_IDENTITY=jupyterhub matches the Hub user name to a
# gateway username or email).
#
# Mind the trust model: a single-user server runs the user's own kernels, and a user who
# can open JupyterLab or a terminal there can read anything the database URL can read.
# Use this for data teams you would give that access anyway; to put the dashboard in
# front of every user of an organisation, run one Voila behind an authenticating proxy
# in header mode (deploy/nginx-oauth2-proxy.conf).

c = get_config()  # noqa: F821  (provided by JupyterHub)

c.Spawner.default_url = "/voila/render/usage_dashboard.ipynb"
c.Spawner.notebook_dir = "/opt/aqueduct-usage/notebooks"
c.Spawner.environment = {
    "AQUEDUCT_IDENTITY": "jupyterhub",
    # A read-only database role; the dashboard also opens every session read-only.
    "AQUEDUCT_DB_URL": "postgresql://usage_ro@db.internal/aqueduct",
    "AQUEDUCT_ROUTER_CONFIG": "/etc/aqueduct/router.yaml",
    "AQUEDUCT_TZ": "Europe/Vienna",
}
# Voila as a server extension of the single-user server, with the same hardening as
# deploy/voila_config.py.
c.Spawner.args = [
    "--VoilaConfiguration.strip_sources=True",
    "--VoilaConfiguration.show_tracebacks=False",
    "--VoilaConfiguration.allow_template_override=NO",
    "--VoilaConfiguration.allow_theme_override=NO",
    "--VoilaConfiguration.file_allowlist=[]",
    "--MappingKernelManager.cull_idle_timeout=900",
    "--MappingKernelManager.cull_interval=60",
]

"""Voila configuration of the usage dashboard (loaded by `usage-dashboard serve`).

`usage-dashboard serve` runs Voila with ``--Voila.config_file_paths=<this directory>``, so
this file is the whole configuration (no per-user Jupyter config is read). To serve the
notebook by hand with the same settings::

    voila --Voila.config_file_paths=deploy notebooks/usage_dashboard.ipynb

The dashboard itself reads its data source and viewer from environment variables
(`usage_lib.dashboard.config_from_environment`): AQUEDUCT_DB_URL, AQUEDUCT_ROUTER_CONFIG,
AQUEDUCT_VIEWER, AQUEDUCT_TZ, AQUEDUCT_NOW, and AQUEDUCT_IDENTITY for who is looking
(`usage_lib.identity`). Voila's kernels inherit the server's environment.
"""

import os

from usage_lib.voila_hooks import may_preheat, prelaunch_hook

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

# -- where and how it listens ---------------------------------------------------------
# Local only: put an authenticating reverse proxy in front for anything else (the kernel
# websockets are not covered by the prelaunch hook; see STACK-NOTES "Identity").
c.Voila.ip = "127.0.0.1"
c.Voila.port = 8866
c.Voila.open_browser = False
# Fail instead of silently moving to another port than the one printed.
c.Voila.port_retries = 0

# -- what the page shows -----------------------------------------------------------------
c.VoilaConfiguration.template = "lab"
c.VoilaConfiguration.theme = "light"
# The page is the widgets only: no code, no tracebacks (errors are shown by the
# dashboard as one readable line; tracebacks go to the server's log).
c.VoilaConfiguration.strip_sources = True
c.VoilaConfiguration.show_tracebacks = False
# No ?voila-template=... / ?voila-theme=... from the URL.
c.VoilaConfiguration.allow_template_override = "NO"
c.VoilaConfiguration.allow_theme_override = "NO"
# Serve no file next to the notebook (Voila serves images from there by default).
c.VoilaConfiguration.file_allowlist = []
# Cells tagged "voila-hidden" (the notes for data scientists) are left out of the page.
c.TagRemovePreprocessor.enabled = True
c.TagRemovePreprocessor.remove_cell_tags = {"voila-hidden"}

# -- identity and kernel start-up --------------------------------------------------------
# In header mode the prelaunch hook runs once per page request, before the kernel starts:
# it answers 403 without the proxy's identity header. Voila cannot combine it with
# preheated kernels, and must not (a preheated kernel never meets the hook).
# In fixed and JupyterHub mode every page shows the same viewer: a kernel is started and
# has imported the dashboard before the visitor arrives (the notebook's configuration
# cell waits there for the page's query string), which takes ~2 s off the first paint.
if may_preheat(os.environ):
    c.VoilaConfiguration.preheat_kernel = True
    c.VoilaConfiguration.default_pool_size = 1
else:
    c.VoilaConfiguration.prelaunch_hook = prelaunch_hook
    c.VoilaConfiguration.preheat_kernel = False

# -- kernels --------------------------------------------------------------------------------
# Every page view starts a kernel; a closed page's kernel is culled after 10 idle minutes.
c.MappingKernelManager.cull_idle_timeout = 600
c.MappingKernelManager.cull_interval = 60
c.MappingKernelManager.cull_connected = False

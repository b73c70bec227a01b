"""Voila configuration of the usage dashboard (loaded by `usage-dashboard serve`).

`usage-dashboard serve` runs Voila with ``--Voila.config_file_paths=<this directory>``, so
this file is the whole configuration (no per-user Jupyter config is read). The dashboard
reads its data source and viewer from the environment (`usage_lib.settings`); Voila's
kernels inherit the server's.
"""

import os

from usage_lib.serving.voila_process import PAGE_OPTIONS, apply, culling, jupyter_path
from usage_lib.serving.voila_hooks import may_preheat, prelaunch_hook

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

# -- where and how it listens ---------------------------------------------------------
# Local only: put an authenticating reverse proxy in front for anything else (the kernel
# websockets are not covered by the prelaunch hook; see the README's "Deployment").
c.Voila.ip = "127.0.0.1"
c.Voila.port = 8866
c.Voila.open_browser = False
# Fail instead of silently moving to another port than the one printed.
c.Voila.port_retries = 0

# -- what the page shows, and kernel culling (shared with deploy/jupyterhub_config.py) ----
# The page's template (usage_lib/serving/jupyter_data/voila/templates/aqueduct): Voila's
# lab template, less its links to a public CDN, plus the `_xsrf` cookie that Voila's
# kernel shutdown on page close needs.
os.environ["JUPYTER_PATH"] = jupyter_path(os.environ.get("JUPYTER_PATH", ""))
apply(c, PAGE_OPTIONS)
# AQUEDUCT_KERNEL_IDLE_TIMEOUT: a shorter idle timeout (load tests; see voila_process.culling).
apply(c, culling(os.environ))
# Cells tagged "voila-hidden" (the notes for data scientists) are left out of the page.
c.TagRemovePreprocessor.enabled = True
c.TagRemovePreprocessor.remove_cell_tags = {"voila-hidden"}

# -- identity and kernel start-up --------------------------------------------------------
# In header mode the prelaunch hook runs once per page request, before the kernel starts:
# it answers 403 without the proxy's identity header. Voila cannot combine it with
# preheated kernels, and must not (a preheated kernel never meets the hook).
# In fixed and JupyterHub mode every page shows the same viewer: a kernel is started and
# has imported the dashboard before the visitor arrives (the notebook waits there for
# the page's query string), which takes ~2 s off the first paint.
if may_preheat(os.environ):
    c.VoilaConfiguration.preheat_kernel = True
    c.VoilaConfiguration.default_pool_size = 1
else:
    c.VoilaConfiguration.prelaunch_hook = prelaunch_hook
    c.VoilaConfiguration.preheat_kernel = False

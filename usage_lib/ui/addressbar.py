"""The browser's address follows the dashboard: reload it or share it to reopen the view.

The kernel cannot touch the page's URL, so a small invisible widget (anywidget) does it
in the browser: whenever `query` changes it rewrites the dashboard's keys of the query
string (`urlstate.STATE_KEYS`) with `history.replaceState`, keeping every other key
(Voila's or a proxy's) and the path. No reload, and no new history entry: the back
button would otherwise change the address without changing the view.

Only the selection goes into the URL, never identity (`urlstate.query_for`); what a
shared URL shows is still decided by the role of whoever opens it.
"""

from __future__ import annotations

import anywidget
import traitlets

from usage_lib.core.urlstate import STATE_KEYS

_ESM = """
function render({ model }) {
  const write = () => {
    const query = model.get("query");
    if (!query) return;
    const url = new URL(window.location.href);
    for (const key of model.get("state_keys")) url.searchParams.delete(key);
    for (const [key, value] of new URLSearchParams(query)) url.searchParams.append(key, value);
    if (url.href !== window.location.href) {
      window.history.replaceState(window.history.state, "", url.href);
    }
  };
  write();
  model.on("change:query", write);
  return () => model.off("change:query", write);
}
export default { render };
"""


class AddressBar(anywidget.AnyWidget):
    """Invisible; `query` (from `urlstate.query_for`) is the view's part of the URL."""

    _esm = _ESM
    query = traitlets.Unicode("").tag(sync=True)
    state_keys = traitlets.List(traitlets.Unicode(), default_value=list(STATE_KEYS)).tag(sync=True)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.layout.display = "none"

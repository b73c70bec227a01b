"""The browser's address follows the dashboard: reload it or share it to reopen the view;
Back and Forward walk the drill-downs.

The kernel cannot touch the page's URL, so a small invisible widget (anywidget) does it
in the browser: whenever `query` changes it rewrites the dashboard's keys of the query
string (`urlstate.STATE_KEYS`), keeping every other key (Voila's or a proxy's) and the
path. No reload. With `push` set (in the same message as `query`: a drill-down from the
top table) the new address is a new history entry (`history.pushState`); otherwise
(filters: org, span, top) it replaces the current one (`history.replaceState`).

When Back or Forward lands on one of these entries (`popstate`), the widget sends the
entry's dashboard keys to the kernel (a custom message ``{"popstate": query}``), and
`on_restore` callbacks get that query: the dashboard requests that view. The query comes
from the browser, like every widget value: the core checks it against the viewer's role.

Only the selection goes into the URL, never identity (`urlstate.query_for`); what a
shared URL shows is still decided by the role of whoever opens it.
"""

from __future__ import annotations

import logging
from typing import Callable

import anywidget
import traitlets

from usage_lib.core.urlstate import STATE_KEYS

log = logging.getLogger(__name__)

#: Longer restored queries are ignored (ours are a few dozen characters).
MAX_QUERY_LENGTH = 2000

_ESM = """
function ours(keys) {
  // This entry's dashboard keys, in the kernel's order.
  const here = new URLSearchParams(window.location.search);
  const query = new URLSearchParams();
  for (const key of keys) for (const value of here.getAll(key)) query.append(key, value);
  return query.toString();
}
function render({ model }) {
  const write = () => {
    const query = model.get("query");
    if (!query) return;
    const url = new URL(window.location.href);
    for (const key of model.get("state_keys")) url.searchParams.delete(key);
    for (const [key, value] of new URLSearchParams(query)) url.searchParams.append(key, value);
    if (url.href === window.location.href) return;
    if (model.get("push")) {
      window.history.pushState({ aqueductUsage: query }, "", url.href);
    } else {
      window.history.replaceState(window.history.state, "", url.href);
    }
  };
  const restore = () => {
    const query = ours(model.get("state_keys"));
    if (query && query !== model.get("query")) model.send({ popstate: query });
  };
  write();
  model.on("change:query", write);
  window.addEventListener("popstate", restore);
  return () => {
    model.off("change:query", write);
    window.removeEventListener("popstate", restore);
  };
}
export default { render };
"""


class AddressBar(anywidget.AnyWidget):
    """Invisible; `query` (from `urlstate.query_for`) is the view's part of the URL, `push`
    says whether its next change is a history step."""

    _esm = _ESM
    query = traitlets.Unicode("").tag(sync=True)
    push = traitlets.Bool(False).tag(sync=True)
    state_keys = traitlets.List(traitlets.Unicode(), default_value=list(STATE_KEYS)).tag(sync=True)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.layout.display = "none"
        self._restore_callbacks: list[Callable[[str], None]] = []
        self.on_msg(self._on_message)

    def show(self, query: str, *, push: bool = False) -> None:
        """Put `query` into the address: a new history entry with `push`, else in place."""
        with self.hold_sync():
            self.push = push
            self.query = query

    def on_restore(self, callback: Callable[[str], None]) -> None:
        """Call `callback(query)` when Back or Forward lands on another view's entry."""
        self._restore_callbacks.append(callback)

    def _on_message(self, _widget, content, _buffers) -> None:
        query = content.get("popstate") if isinstance(content, dict) else None
        if not isinstance(query, str) or len(query) > MAX_QUERY_LENGTH:
            log.warning("ignored a malformed address message from the page")
            return
        for callback in self._restore_callbacks:
            callback(query)

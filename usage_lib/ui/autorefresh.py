"""Auto-refresh: the control's choices and the browser-side ticker.

Auto-refresh is opt-in: off, or every 30 s, 1 min or 5 min (`urlstate.REFRESH_INTERVALS`,
kept in the address as `refresh`). The kernel has no clock of its own that may interrupt
it, so a small invisible widget (anywidget, as `zonepicker.BrowserZone`) keeps the time
in the browser: every `seconds` it asks the kernel for a refresh (a custom message
``{"tick": true}``), only while the page is visible (`document.visibilityState`) and no
refresh runs (`busy`, set by the kernel around every refresh). A tick due while the page
was hidden is sent once when it is shown again; ticks due while `busy` are dropped, never
queued, so two refreshes never overlap.
"""

from __future__ import annotations

import logging
from typing import Callable

import anywidget
import traitlets

from usage_lib.core.urlstate import REFRESH_INTERVALS, REFRESH_OFF

log = logging.getLogger(__name__)

_ESM = """
function initialize({ model }) {
  let timer = null;
  let missed = false;
  const tick = () => {
    if (document.visibilityState !== "visible") {
      missed = true;
      return;
    }
    missed = false;
    if (!model.get("busy")) model.send({ tick: true });
  };
  const start = () => {
    clearInterval(timer);
    timer = null;
    missed = false;
    const seconds = model.get("seconds");
    if (seconds > 0) timer = setInterval(tick, seconds * 1000);
  };
  const shown = () => {
    if (!missed || document.visibilityState !== "visible") return;
    start();
    tick();
  };
  start();
  model.on("change:seconds", start);
  document.addEventListener("visibilitychange", shown);
  return () => {
    clearInterval(timer);
    model.off("change:seconds", start);
    document.removeEventListener("visibilitychange", shown);
  };
}
export default { initialize };
"""


def refresh_label(choice: str) -> str:
    """How the control names a choice: "Off", "30 s", "1 min", "5 min"."""
    seconds = REFRESH_INTERVALS.get(choice)
    if seconds is None:
        return "Off"
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min"


def refresh_options() -> list[tuple[str, str]]:
    """(label, choice) of the control: off, then every interval, shortest first."""
    choices = [REFRESH_OFF, *sorted(REFRESH_INTERVALS, key=REFRESH_INTERVALS.get)]
    return [(refresh_label(choice), choice) for choice in choices]


class Ticker(anywidget.AnyWidget):
    """Invisible; calls its `on_tick` callbacks every `seconds` (0: never) while the page
    is visible and not `busy`."""

    _esm = _ESM
    seconds = traitlets.Int(0).tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.layout.display = "none"
        self._tick_callbacks: list[Callable[[], None]] = []
        self.on_msg(self._on_message)

    def follow(self, choice: str) -> None:
        """Tick at the interval of `choice` (`REFRESH_INTERVALS`; anything else: never)."""
        self.seconds = REFRESH_INTERVALS.get(choice, 0)

    def on_tick(self, callback: Callable[[], None]) -> None:
        """Call `callback()` when the page asks for a refresh."""
        self._tick_callbacks.append(callback)

    def _on_message(self, _widget, content, _buffers) -> None:
        if content != {"tick": True}:
            log.warning("ignored a malformed auto-refresh message from the page")
            return
        for callback in self._tick_callbacks:
            callback()

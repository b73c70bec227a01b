"""The time zone picker's choices, and the browser's own zone.

The picker offers the operator's zone first (`Settings.view.tz`, what an address without
`tz` shows), then the zone of the viewer's browser, then every IANA zone, sorted. The
kernel cannot ask the browser for its zone, so a small invisible widget (anywidget, as
`addressbar.AddressBar`) reads it there (`Intl.DateTimeFormat().resolvedOptions()`) and
sends it back as its `zone`. Like every value from the page it is checked before use: a
name that is not an IANA zone is ignored.
"""

from __future__ import annotations

import anywidget
import traitlets

from usage_lib.core.urlstate import iana_zones

#: How the picker marks its first two choices.
DEFAULT_MARK = "default"
BROWSER_MARK = "browser"

_ESM = """
function report(model) {
  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    return;
  }
  if (zone && zone !== model.get("zone")) {
    model.set("zone", zone);
    model.save_changes();
  }
}
export default {
  initialize({ model }) { report(model); },
  render({ model }) { report(model); },
};
"""


class BrowserZone(anywidget.AnyWidget):
    """Invisible; `zone` is the browser's IANA zone once the page has said it ("" before)."""

    _esm = _ESM
    zone = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.layout.display = "none"

    @property
    def known_zone(self) -> str | None:
        """The browser's zone if it is an IANA zone, else None."""
        return self.zone if self.zone in iana_zones() else None


def zone_options(default: str, browser: str | None = None) -> list[tuple[str, str]]:
    """(label, zone) choices: the operator's `default` zone, the `browser`'s own (unless
    it is the same), then every other IANA zone in alphabetical order."""
    options = [(f"{default} ({DEFAULT_MARK})", default)]
    if browser and browser != default:
        options.append((f"{browser} ({BROWSER_MARK})", browser))
    first = {zone for _, zone in options}
    options += [(name, name) for name in sorted(iana_zones()) if name not in first]
    return options

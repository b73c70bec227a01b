"""`serve --archive`: keep the usage archive synced in the background while serving.

A thread runs `Settings.sync` every `every` (a minute by default); the page reads what
it has archived so far. A failing run is logged and retried at the next tick: the
archive only ever moves forward a whole day's transaction at a time.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from usage_lib.core.usage import describe_error
from usage_lib.history.store import open_store
from usage_lib.settings import Settings

log = logging.getLogger(__name__)


def create_archive(settings: Settings) -> None:
    """Make the archive (and migrate it) before the page opens it for reading."""
    open_store(settings.archive_url, writable=True).close()


class BackgroundSync:
    """Sync every `every` until `stop()`; the first run starts at once."""

    def __init__(self, settings: Settings, every: timedelta, settle: timedelta) -> None:
        self.settings = settings
        self.every = every
        self.settle = settle
        self.runs = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="archive-sync", daemon=True)

    def start(self) -> "BackgroundSync":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                result = self.settings.sync(settle=self.settle, wait=True)
                if result.slices:
                    log.info("archive: %s slices (%s requests) up to %s", result.slices, result.requests,
                             result.watermark.isoformat())
            except Exception as exc:  # noqa: BLE001 - the server keeps serving; the next tick retries
                log.warning("archive sync failed: %s", describe_error(exc))
            self.runs += 1
            self._stopped.wait(self.every.total_seconds())

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._thread.join(timeout)

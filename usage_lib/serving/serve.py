"""`usage-dashboard serve`: the dashboard notebook under Voila, on 127.0.0.1:8866 by default.

Checks the settings first (database, router config, zone, viewer: one line and no server
when something is wrong), hands them to Voila and its kernels through the environment
(`Settings.to_env`), prints the URL once Voila listens, and stops Voila and its kernels
on Ctrl-C or SIGTERM. With an archive it also keeps the archive synced (`archive_sync`),
unless another process does (`sync_every` None: several servers reading one archive).
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

from usage_lib.errors import UsageError
from usage_lib.history.sync import DEFAULT_SETTLE
from usage_lib.serving import voila_process
from usage_lib.serving.archive_sync import BackgroundSync, create_archive
from usage_lib.settings import Settings


class _Stop(Exception):
    pass


def _raise_stop(_signum, _frame) -> None:
    raise _Stop


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8866,
          sync_every: timedelta | None = timedelta(minutes=1), settle: timedelta = DEFAULT_SETTLE) -> int:
    """Serve until Ctrl-C or SIGTERM; returns 0 after a requested stop. With
    `settings.archive_url`, sync the archive every `sync_every` meanwhile (None: only
    read it; it must exist).

    SIGINT stays ignored when it was (a supervisor's choice, or a shell's for `serve &`).
    Until Voila is started a signal ends the start-up at once; from then on it is only
    noted, and the process polls for it: a signal may be delivered to any thread of the
    process, and would then not interrupt a blocking wait of the main thread.
    """
    signals = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else [])
    previous = {sig: signal.signal(sig, _raise_stop) for sig in signals}
    requested: list[int] = []
    syncing = None
    try:
        syncs = bool(settings.archive_url and sync_every)
        if syncs:
            create_archive(settings)
        settings.check()
        if not voila_process.port_free(host, port):
            raise UsageError(f"port {port} on {host} is in use: stop what runs there or give --port")
        for sig in signals:
            signal.signal(sig, lambda signum, _frame: requested.append(signum))
        if syncs:
            syncing = BackgroundSync(settings, sync_every, settle).start()
        server = voila_process.start(settings.to_env(os.environ), host, port)
        try:
            server.wait_ready(cancelled=lambda: bool(requested))
            if requested:
                return 0
            viewer = settings.viewer if settings.identity == "fixed" else f"from {settings.identity}"
            print(f"\nThe usage dashboard is served at {server.url}  (viewer: {viewer}; Ctrl-C stops it)\n", flush=True)
            while not requested:
                status = server.process.poll()
                if status is not None:
                    raise UsageError(f"the Voila server stopped by itself (status {status})")
                time.sleep(0.1)
            return 0
        finally:
            for sig in signals:
                signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C does not cut the stop short
            server.stop()
    except _Stop:
        return 0
    finally:
        if syncing is not None:
            syncing.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

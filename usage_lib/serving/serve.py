"""`usage-dashboard serve`: the dashboard notebook under Voila, on 127.0.0.1:8866 by default.

Checks the settings first (database, router config, zone, viewer: one line and no server
when something is wrong), hands them to Voila and its kernels through the environment
(`Settings.to_env`), prints the URL once Voila listens, and stops Voila and its kernels
on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal

from usage_lib.errors import UsageError
from usage_lib.serving import voila_process
from usage_lib.settings import Settings


class _Stop(Exception):
    pass


def _raise_stop(_signum, _frame) -> None:
    raise _Stop


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8866) -> int:
    """Serve until Ctrl-C or SIGTERM; returns 0 after a requested stop."""
    settings.check()
    if not voila_process.port_free(host, port):
        raise UsageError(f"port {port} on {host} is in use: stop what runs there or give --port")
    server = voila_process.start(settings.to_env(os.environ), host, port)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.wait_ready()
        viewer = settings.viewer if settings.identity == "fixed" else f"from {settings.identity}"
        print(f"\nThe usage dashboard is served at {server.url}  (viewer: {viewer}; Ctrl-C stops it)\n", flush=True)
        status = server.process.wait()
        raise UsageError(f"the Voila server stopped by itself (status {status})")
    except _Stop:
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

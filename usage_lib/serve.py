"""`usage-dashboard serve`: the dashboard notebook under Voila, on 127.0.0.1:8866 by default.

Without ``--db`` it serves the demo database (``demo/demo.sqlite3``, built on first run,
as the demo's global admin unless ``--viewer``). It checks the database, the router
config and the time zone before starting, hands them to the notebook's kernels through
environment variables (`usage_lib.dashboard.config_from_environment` reads them), runs
Voila with the repository's configuration (``deploy/voila.py``), and prints the URL to
open once Voila listens.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from usage_lib.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO_ROOT / "notebooks" / "usage_dashboard.ipynb"
VOILA_CONFIG_DIR = REPO_ROOT / "deploy"
DEMO_DB = Path("demo") / "demo.sqlite3"
STARTUP_TIMEOUT_S = 60.0


def dashboard_environment(args: argparse.Namespace, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Voila (and so every kernel) gets: AQUEDUCT_* from the arguments.

    Builds the demo database on first use when no ``--db`` is given. Raises `UsageError`
    for a database, router config or zone that does not work.
    """
    from usage_lib.cli import db_url
    from usage_lib.db import open_database
    from usage_lib.identity import identity_config
    from usage_lib.routerconfig import load_router_config
    from usage_lib.timebuckets import zone

    env = dict(os.environ if base is None else base)
    router = args.router_config
    if args.db is None:
        from usage_lib.demo import build_demo, demo_paths

        db_path = Path(getattr(args, "demo_db", None) or DEMO_DB).resolve()
        url, demo_router = demo_paths(db_path)
        if not db_path.exists():
            print(f"building the demo database {db_path} (first run) ...", flush=True)
            build_demo(url, demo_router)
        router = router or demo_router
        env["AQUEDUCT_DEMO"] = "1"
    else:
        url = db_url(args.db)
        env.pop("AQUEDUCT_DEMO", None)
    db = open_database(url)  # fail now, with one line, rather than on the page
    db.close()
    if router is not None:
        load_router_config(router)
        env["AQUEDUCT_ROUTER_CONFIG"] = str(Path(router).resolve())
    else:
        env.pop("AQUEDUCT_ROUTER_CONFIG", None)
    zone(args.tz)
    env["AQUEDUCT_DB_URL"] = url
    env["AQUEDUCT_TZ"] = args.tz
    if args.viewer:
        env["AQUEDUCT_VIEWER"] = args.viewer
    identity = identity_config(env)
    if identity.mode == "fixed" and not identity.fixed_viewer and env.get("AQUEDUCT_DEMO") != "1":
        raise UsageError("who is looking? give --viewer EMAIL_OR_USERNAME, or set AQUEDUCT_IDENTITY=header|jupyterhub")
    return env


def voila_command(host: str, port: int, notebook: Path = NOTEBOOK, config_dir: Path = VOILA_CONFIG_DIR) -> list[str]:
    return [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        f"--Voila.config_file_paths={config_dir}",
        f"--Voila.ip={host}",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
        "--no-browser",
    ]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float = STARTUP_TIMEOUT_S) -> bool:
    """True once something accepts connections on host:port; False if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> None:
    """SIGTERM (a service manager, `kill`) stops Voila and its kernels like Ctrl-C does,
    instead of leaving them running without us."""
    try:
        signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: the caller handles signals
        pass


def serve(args: argparse.Namespace) -> int:
    if not NOTEBOOK.exists():
        raise UsageError(f"dashboard notebook not found: {NOTEBOOK} (serve runs from a checkout of the repository)")
    if not _port_free(args.host, args.port):
        raise UsageError(f"port {args.port} on {args.host} is in use: stop what runs there or give --port")
    env = dashboard_environment(args)
    url = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/"
    process = subprocess.Popen(voila_command(args.host, args.port), env=env)
    _stop_on_sigterm()
    try:
        if wait_for_port(args.host, args.port, process):
            viewer = env.get("AQUEDUCT_VIEWER") or ("the demo's global admin" if env.get("AQUEDUCT_DEMO") == "1" else "see AQUEDUCT_IDENTITY")
            print(f"\nThe usage dashboard is served at {url}  (viewer: {viewer}; Ctrl-C stops it)\n", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=10)
        return 130

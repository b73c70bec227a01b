"""The dashboard notebook under Voila: where the notebook and the configuration live
(package data, so an installed package serves without a checkout), the hardening both
deployment configurations share, and a Voila process to start, wait for and stop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import psutil

from usage_lib.errors import UsageError
from usage_lib.history.slices import parse_duration
from usage_lib.settings import ENV_KERNEL_IDLE_TIMEOUT

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "usage_dashboard.ipynb"
#: Holds `voila.py`, the whole Voila configuration (`--Voila.config_file_paths`).
CONFIG_DIR = HERE / "voila_config"
#: A Jupyter data directory (put on JUPYTER_PATH by voila_config/voila.py) holding the
#: page's Voila template, `TEMPLATE`: Voila's lab template that loads nothing from outside
#: the server and lets a closed page shut its kernel down (see its index.html.j2).
JUPYTER_DATA = HERE / "jupyter_data"
TEMPLATE = "aqueduct"
STARTUP_TIMEOUT_S = 60.0
#: How long Voila has to stop with its kernels before they are killed.
STOP_TIMEOUT_S = 2.0

#: What the page is and may do, for Voila alone (voila_config/voila.py) and for Voila as
#: a JupyterHub server extension (deploy/jupyterhub_config.py) alike.
PAGE_OPTIONS: dict[str, object] = {
    "VoilaConfiguration.template": TEMPLATE,
    "VoilaConfiguration.theme": "light",
    # The page is the widgets only: no code, no tracebacks (errors are shown by the
    # dashboard as one readable line; tracebacks go to the server's log).
    "VoilaConfiguration.strip_sources": True,
    "VoilaConfiguration.show_tracebacks": False,
    # No ?voila-template=... / ?voila-theme=... from the URL.
    "VoilaConfiguration.allow_template_override": "NO",
    "VoilaConfiguration.allow_theme_override": "NO",
    # Serve no file next to the notebook (Voila serves images from there by default).
    "VoilaConfiguration.file_allowlist": [],
    # A closed page's kernel is culled after 10 idle minutes at the latest.
    "MappingKernelManager.cull_idle_timeout": 600,
    "MappingKernelManager.cull_interval": 60,
    "MappingKernelManager.cull_connected": False,
    # How long Voila waits, after a cell's reply, for the rest of the cell's output (the
    # dashboard's widgets). nbclient's default, 4 s, is passed on a busy server (8 pages
    # opened at once on 2 busy cores, benchmarks/load.py): Voila logs "Timeout waiting
    # for IOPub output", drops the rest and the page stays empty. Normally it is not waited.
    "VoilaExecutor.iopub_timeout": 60,
    # Kernels talk to Voila over Unix sockets beside their connection files, not TCP
    # ports on 127.0.0.1: with 50 pages opened at once a kernel picked a port another
    # took meanwhile ("Address already in use") and died before its page showed.
    "KernelManager.transport": "ipc",
}


def culling(env: Mapping[str, str]) -> dict[str, object]:
    """The culling of `PAGE_OPTIONS`, with the idle timeout `ENV_KERNEL_IDLE_TIMEOUT`
    gives (a duration, e.g. "30s"), looked for every quarter of it (at most every
    minute); none when unset. A load test waits seconds, not 10 minutes, for the kernels
    of pages that went away without closing. `UsageError` if it is not a duration."""
    text = env.get(ENV_KERNEL_IDLE_TIMEOUT, "").strip()
    if not text:
        return {}
    seconds = max(1, round(parse_duration(text, ENV_KERNEL_IDLE_TIMEOUT).total_seconds()))
    return {"MappingKernelManager.cull_idle_timeout": seconds,
            "MappingKernelManager.cull_interval": max(1, min(60, seconds // 4))}


def jupyter_path(existing: str = "") -> str:
    """A JUPYTER_PATH with the package's data directory (the page's template) first;
    Voila looks templates up there when it starts and on every template file request."""
    others = [path for path in existing.split(os.pathsep) if path and path != str(JUPYTER_DATA)]
    return os.pathsep.join([str(JUPYTER_DATA), *others])


def apply(config, options: Mapping[str, object]) -> None:
    """Set ``"Section.name": value`` options on a traitlets config object."""
    for key, value in options.items():
        section, name = key.split(".")
        setattr(getattr(config, section), name, value)


def command_line(options: Mapping[str, object]) -> list[str]:
    """The same options as command-line flags (``--Section.name=value``)."""
    return [f"--{key}={_flag(value)}" for key, value in options.items()]


def _flag(value: object) -> str:
    if isinstance(value, list):
        return "[" + ",".join(repr(item) for item in value) + "]"
    return str(value)


def voila_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "voila",
        str(NOTEBOOK),
        f"--Voila.config_file_paths={CONFIG_DIR}",
        f"--Voila.ip={host}",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
        "--no-browser",
    ]


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def url_of(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


@dataclass
class VoilaProcess:
    """A running Voila server of the dashboard notebook (`start`)."""

    host: str
    port: int
    process: subprocess.Popen
    log: Path | None = None

    @property
    def url(self) -> str:
        return url_of(self.host, self.port)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S, cancelled: Callable[[], bool] | None = None) -> "VoilaProcess":
        """Return once Voila accepts connections, or `cancelled()` is true; `UsageError`
        if it stops or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancelled is not None and cancelled():
                return self
            if self.process.poll() is not None:
                raise UsageError("the Voila server stopped" + (": " + self._log_tail() if self.log else ""))
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        raise UsageError(f"the Voila server did not listen on port {self.port} within {timeout:.0f} s")

    def _log_tail(self) -> str:
        return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-5:])

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Stop Voila and its kernels within `timeout` seconds (and a little), quietly.

        The kernels get SIGTERM first: each runs in a session of its own, and a kernel
        that Voila shuts down in the middle of a cell (a preheated kernel waits in one for
        its page) prints a ZMQError traceback; ended by the signal it prints nothing, and
        Voila's own shutdown is quicker. Then Voila gets SIGTERM, and whatever of the
        process tree is left after `timeout` gets SIGKILL. Returns Voila's exit status.
        """
        if self.process.poll() is None:
            try:
                tree = psutil.Process(self.process.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                tree = []
            _signal_all(tree, signal.SIGTERM)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            _signal_all(tree, signal.SIGKILL)
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
        if self.log is not None:
            shutil.rmtree(self.log.parent, ignore_errors=True)
        return self.process.returncode


def _signal_all(processes: list[psutil.Process], signum: int) -> None:
    """Signal those of `processes` still running (psutil checks a pid was not reused)."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                process.send_signal(signum)


def start(env: Mapping[str, str], host: str = "127.0.0.1", port: int | None = None, *, quiet: bool = False) -> VoilaProcess:
    """Start Voila on the dashboard notebook with `env` (`Settings.to_env`). Returns at
    once: call `wait_ready()`, and `stop()` at the end. `quiet` sends its output to a log
    file instead of the terminal."""
    if not NOTEBOOK.is_file():
        raise UsageError(f"the dashboard notebook is missing from the installed package: {NOTEBOOK}")
    port = free_port() if port is None else port
    log_path = None
    output = None
    if quiet:
        log_path = Path(tempfile.mkdtemp(prefix="aqueduct-voila-")) / "voila.log"
        output = open(log_path, "wb")
    try:
        process = subprocess.Popen(
            voila_command(host, port),
            cwd=NOTEBOOK.parent,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT if quiet else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if output is not None:
            output.close()
    return VoilaProcess(host=host, port=port, process=process, log=log_path)

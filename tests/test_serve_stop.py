"""Stopping `usage-dashboard serve` (issue 12, item 5): SIGTERM from a service manager,
Ctrl-C in a terminal (SIGINT to the whole process group), and SIGTERM under a supervisor
that started it with SIGINT ignored. Each time Voila and every kernel are gone within
3 s, nothing is printed after the signal but Voila's own shutdown lines (no traceback,
no ZMQError), and the exit status is 0; `make serve` stopped with Ctrl-C ends without
make's "Error 130".

Needs a Voila server (no browser). Processes are followed with psutil; whatever a test
leaves running is killed at its end.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import psutil
import pytest

from tests.support import REPO_ROOT, unavailable
from tests.support.dashboard import DEMO_NOW
from usage_lib.demo import DEMO_ADMIN_EMAIL

pytestmark = pytest.mark.browser  # a Voila server, as the browser tests

STOP_WITHIN_S = 3.0
STARTUP_TIMEOUT_S = 120
QUIET = re.compile(r"Traceback|ZMQError|Error|Exception|KeyboardInterrupt", re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Served:
    process: subprocess.Popen
    url: str
    output: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    pool: threading.Event = field(default_factory=threading.Event)

    def text(self, start: int = 0) -> str:
        return "".join(self.output[start:])

    def tree(self) -> list[psutil.Process]:
        """The serve process, and Voila and its kernels (in sessions of their own)."""
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def kernels(self) -> list[psutil.Process]:
        return [p for p in self.tree()[1:] if "ipykernel" in " ".join(p.cmdline())]


@contextlib.contextmanager
def started(command: list[str], *, ignore_sigint: bool = False, cwd=REPO_ROOT):
    """`command` (a serve) in a new process group, its output collected; on leaving,
    anything of its process tree still running is killed."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AQUEDUCT_")}
    env.update({"AQUEDUCT_NOW": DEMO_NOW.isoformat(), "PYTHONUNBUFFERED": "1"})

    def child_setup() -> None:
        # As a terminal's foreground job, whatever the test run inherited: a run started
        # as `make test &` from a script ignores SIGINT, and so would every serve here.
        signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_sigint else signal.SIG_DFL)

    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=child_setup)
    served = Served(process, "")

    def pump() -> None:
        for line in process.stdout:
            served.output.append(line)
            match = re.search(r"served at (http://\S+)", line)
            if match:
                served.url = match.group(1)
                served.ready.set()
            if "Kernel pool" in line:
                served.pool.set()

    threading.Thread(target=pump, daemon=True).start()
    everything: list[psutil.Process] = []
    try:
        yield served, everything
    finally:
        with contextlib.suppress(psutil.Error):
            everything += psutil.Process(process.pid).children(recursive=True)
        for leftover in everything:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def serve_command(demo_gateway, port: int) -> list[str]:
    return [sys.executable, "-m", "usage_lib.cli", "serve", "--db", demo_gateway.url,
            "--router-config", str(demo_gateway.router_config), "--viewer", DEMO_ADMIN_EMAIL, "--port", str(port)]


def wait_until_serving(served: Served, everything: list[psutil.Process], *, open_page: bool = True) -> None:
    """Until the page was served once and the kernel pool refilled: Voila, the page's
    kernel and a preheated one are running."""
    if not served.ready.wait(STARTUP_TIMEOUT_S):
        pytest.fail(f"serve printed no URL:\n{served.text()[-4000:]}", pytrace=False)
    assert served.pool.wait(STARTUP_TIMEOUT_S), served.text()[-4000:]
    if open_page:
        with urllib.request.urlopen(served.url, timeout=STARTUP_TIMEOUT_S) as response:
            assert response.status == 200
            response.read()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while len(served.kernels()) < (2 if open_page else 1):
        assert time.monotonic() < deadline, served.text()[-4000:]
        time.sleep(0.2)
    everything += served.tree()


def ended(process: psutil.Process) -> bool:
    """Ended: gone, or a zombie (an orphan's is reaped when init gets to it)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until_ended(processes: list[psutil.Process], sent_at: float) -> None:
    while time.monotonic() - sent_at < STOP_WITHIN_S and not all(ended(p) for p in processes):
        time.sleep(0.05)
    alive = [p for p in processes if not ended(p)]
    assert not alive, f"still running {time.monotonic() - sent_at:.1f} s after the signal: {alive}"


def assert_stopped_quietly(served: Served, everything: list[psutil.Process], sent_at: float, printed_before: int) -> None:
    wait_until_ended(everything, sent_at)
    exit_status = served.process.wait(timeout=5)
    assert exit_status == 0, served.text()[-4000:]
    time.sleep(0.2)  # the last lines through the pipe
    after = served.text(printed_before)
    assert not QUIET.search(after), f"printed after the signal:\n{after}"


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_serve_stops_voila_and_its_kernels(demo_gateway, how):
    with started(serve_command(demo_gateway, free_port())) as (served, everything):
        wait_until_serving(served, everything)
        assert len(served.kernels()) >= 2, served.text()[-4000:]
        printed = len(served.output)
        sent_at = time.monotonic()
        if how == "sigterm":
            os.kill(served.process.pid, signal.SIGTERM)  # serve alone, as a service manager does
        else:
            os.killpg(served.process.pid, signal.SIGINT)  # the whole foreground group, as a terminal does
        assert_stopped_quietly(served, everything, sent_at, printed)


def test_serve_started_with_sigint_ignored_stops_on_sigterm(demo_gateway):
    with started(serve_command(demo_gateway, free_port()), ignore_sigint=True) as (served, everything):
        wait_until_serving(served, everything)
        # Ignored SIGINT stays ignored (a supervisor's, or a shell's for `serve &`) ...
        os.killpg(served.process.pid, signal.SIGINT)
        time.sleep(1.0)
        assert served.process.poll() is None, served.text()[-4000:]
        assert all(process.is_running() for process in everything)
        # ... and SIGTERM stops it all.
        printed = len(served.output)
        sent_at = time.monotonic()
        os.kill(served.process.pid, signal.SIGTERM)
        assert_stopped_quietly(served, everything, sent_at, printed)


def test_ctrl_c_while_voila_starts(demo_gateway):
    """Ctrl-C before Voila listens stops it too, and still exits 0."""
    with started(serve_command(demo_gateway, free_port())) as (served, everything):
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not any("voila" in " ".join(p.cmdline()) for p in served.tree()[1:]):
            assert time.monotonic() < deadline and served.process.poll() is None, served.text()[-4000:]
            time.sleep(0.05)
        everything += served.tree()
        printed = len(served.output)
        sent_at = time.monotonic()
        os.killpg(served.process.pid, signal.SIGINT)
        assert_stopped_quietly(served, everything, sent_at, printed)


def test_make_serve_ends_quietly_on_ctrl_c(demo_gateway):
    make = shutil.which("make")
    if make is None:
        unavailable("make is not installed")
    if not (REPO_ROOT / ".venv" / "bin" / "usage-dashboard").exists():
        unavailable("make serve runs .venv/bin/usage-dashboard: run `make setup` first")
    args = " ".join(serve_command(demo_gateway, free_port())[4:])
    # -o setup: the virtualenv is there; a test does not reinstall it.
    with started([make, "-o", "setup", "serve", f"ARGS={args}"]) as (served, everything):
        wait_until_serving(served, everything, open_page=False)
        printed = len(served.output)
        sent_at = time.monotonic()
        os.killpg(served.process.pid, signal.SIGINT)
        wait_until_ended([p for p in everything if p.pid != served.process.pid], sent_at)
        served.process.wait(timeout=10)
        time.sleep(0.2)
        after = served.text(printed)
        assert "Error 130" not in after and not QUIET.search(after), f"printed after Ctrl-C:\n{after}"

"""pytest plugin: `usage-dashboard serve` on the demo gateway, for the end-to-end tests.

Helpers
-------
``serving(demo_gateway, identity, *args)``: a context manager running ``usage-dashboard
    serve`` on a free port with the AQUEDUCT_* variables `identity` and extra `args`; it
    yields a `Server` once the command printed its URL and stops it (SIGTERM to its process
    group) on leaving.
``Server``: the process, its URL and everything it printed (``output``, a list of lines
    appended by a reader thread); ``mark()`` / ``wait_for_log(text, since)`` read what it
    printed after a point; ``kernel_ids()`` / ``wait_for_kernels(condition)`` follow the
    kernels running under it.

Fixtures
--------
``voila_server`` (shared): the dashboard behind a proxy, identity from the
    ``X-Forwarded-Email`` header on every request (``AQUEDUCT_IDENTITY=header``), at the
    demo's as-of time. Starting Voila is slow, and every test of this configuration may
    share one server (a page shows its viewer's view whatever other pages were opened
    before), so one server serves all the tests that ask for it, across modules: it is
    started for the first and stopped after the last of them in the run's order (not at the
    session's end: the tests after it do not share the machine with it). A test that reads
    the server's log reads what was printed since it started (``mark()``), not before.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tests.support import REPO_ROOT

STARTUP_TIMEOUT_S = 90
HEADER = "X-Forwarded-Email"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process = process
        self.url = url
        self.output: list[str] = []

    def log(self) -> str:
        return "".join(self.output[-60:])

    def mark(self) -> int:
        """A point in the output: `text(since=mark)` is what was printed after it."""
        return len(self.output)

    def text(self, since: int = 0) -> str:
        return "".join(self.output[since:])

    def wait_for_log(self, pattern: str, since: int = 0, timeout: float = 10.0) -> str:
        """Until a line printed after `since` matches the regular expression `pattern`
        (the server's lines reach us through a pipe and a reader thread, a moment after
        the server acted); that line. Fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.output[since:]:
                if re.search(pattern, line):
                    return line
            if time.monotonic() > deadline:
                pytest.fail(f"the server printed no line matching {pattern!r} in {timeout:.0f} s; "
                            f"since the mark:\n{self.text(since)[-4000:]}", pytrace=False)
            time.sleep(0.05)

    def kernel_ids(self) -> set[str]:
        """The kernels running under this server, by id (from their connection files)."""
        ids = set()
        for child in psutil.Process(self.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                match = re.search(r"kernel-([0-9a-f-]{36})\.json", " ".join(child.cmdline()))
                if match:
                    ids.add(match.group(1))
        return ids

    def wait_for_kernels(self, condition, timeout: float = 10.0) -> set[str]:
        """Poll `kernel_ids()` until `condition(ids)`; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition(ids := self.kernel_ids()):
            if time.monotonic() > deadline:
                pytest.fail(f"kernels after {timeout:.0f} s: {sorted(ids)}\n{self.log()}", pytrace=False)
            time.sleep(0.1)
        return ids


@contextlib.contextmanager
def serving(demo_gateway, identity: dict[str, str], *args: str):
    """`usage-dashboard serve` on a free port with `identity` (AQUEDUCT_* variables) and
    extra `args`; yields the `Server` once it printed its URL, stops it (SIGTERM) after."""
    from tests.support.dashboard import DEMO_NOW

    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AQUEDUCT_") and key != "QUERY_STRING"}
    env.update({**identity, "AQUEDUCT_NOW": DEMO_NOW.isoformat(), "PYTHONUNBUFFERED": "1"})
    command = [sys.executable, "-m", "usage_lib.cli", "serve", "--db", demo_gateway.url,
               "--router-config", str(demo_gateway.router_config), "--port", str(port), *args]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    server = Server(process, "")
    printed = threading.Event()

    def pump() -> None:
        for line in process.stdout:
            server.output.append(line)
            match = re.search(r"served at (http://\S+)", line)
            if match:
                server.url = match.group(1)
                printed.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not printed.wait(STARTUP_TIMEOUT_S):
            pytest.fail(f"usage-dashboard serve printed no URL:\n{server.log()}", pytrace=False)
        assert server.url == f"http://127.0.0.1:{port}/"
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


# -- one header-mode server for every test that asks for it ------------------------------------

SHARED = "voila_server"
_shared: dict[str, tuple[contextlib.ExitStack, Server]] = {}
_last_user: dict[str, str] = {}  # fixture name -> nodeid of the last test (in run order) using it


def _stop_shared(name: str | None = None) -> None:
    for key in [name] if name else list(_shared):
        entry = _shared.pop(key, None)
        if entry is not None:
            entry[0].close()


@pytest.fixture
def voila_server(demo_gateway) -> Server:
    """The dashboard behind a proxy: the viewer comes from a header on every request.
    One server for all the tests using this fixture (see the module's docstring)."""
    if SHARED not in _shared:
        stack = contextlib.ExitStack()
        try:
            server = stack.enter_context(serving(demo_gateway, {"AQUEDUCT_IDENTITY": "header"}))
        except BaseException:
            stack.close()
            raise
        _shared[SHARED] = (stack, server)
    stack, server = _shared[SHARED]
    if server.process.poll() is not None:
        pytest.fail(f"the shared Voila server ended (status {server.process.returncode}):\n{server.log()}",
                    pytrace=False)
    return server


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    _last_user.clear()
    for item in items:
        if SHARED in getattr(item, "fixturenames", ()):
            _last_user[SHARED] = item.nodeid


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """After the last test that uses the shared server (or before a test run out of the
    collected order, e.g. by a plugin, finds none: the fixture starts it again)."""
    if SHARED in _shared and (nextitem is None or _last_user.get(SHARED) == item.nodeid):
        _stop_shared(SHARED)


def pytest_sessionfinish(session, exitstatus):
    _stop_shared()

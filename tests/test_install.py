"""The package installs for real (issue 11, item 6): a wheel built from the repository,
installed into a fresh virtualenv outside it, runs `usage-dashboard demo`, `serve` and a
PDF `snapshot` from a directory that is not the repository, so that every file the
commands need must come from the wheel (package data), none from the checkout.

The wheel is installed by pip (`--no-deps --no-index`). Its dependencies are not fetched
again from the package index (that took most of a minute): the virtualenv gets exactly the
distributions its metadata requires, and theirs (markers and extras evaluated), as the
test environment has them, hard-linked file by file from their RECORDs (copied across file
systems), and nothing else: not the checkout's editable install, not the test extras. A
requirement that the test environment does not satisfy (missing, or a version outside the
wheel's specifier) fails the test; a module the commands import from an undeclared
distribution is missing in the virtualenv, as after `pip install`.

Marked `install`; `-m "not install"` leaves it out.
"""

from __future__ import annotations

import contextlib
import email
import http.client
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.support import REPO_ROOT, unavailable

pytestmark = pytest.mark.install

VIEWER = "admin@acme.example"
INSTALL_TIMEOUT_S = 900
SERVE_TIMEOUT_S = 120


@dataclass
class Installed:
    venv: Path
    workdir: Path
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        return [str(self.venv / "bin" / "usage-dashboard"), *args]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), cwd=self.workdir, env=self.env, capture_output=True, text=True,
                              timeout=timeout)


def timed(timings: dict[str, float], name: str, command: list[str], **options) -> subprocess.CompletedProcess:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, **options)
    timings[name] = time.monotonic() - started
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def source_copy(target: Path) -> Path:
    """What the wheel is built from: pyproject.toml, the README and the package, copied,
    so that no build/ or egg-info of the checkout goes into it (and none is left there)."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, target / name)
    shutil.copytree(REPO_ROOT / "usage_lib", target / "usage_lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
    return target


def required_distributions(wheel: Path) -> list[importlib.metadata.Distribution]:
    """The distributions of this environment that installing `wheel` needs: its
    Requires-Dist, and theirs, with markers (and the extras asked for) evaluated here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        requires = email.message_from_bytes(archive.read(metadata)).get_all("Requires-Dist") or []
    available: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions():
        available.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    extras: dict[str, set[str]] = {}  # canonical name -> the extras asked for
    todo = [(text, "") for text in requires]
    while todo:
        text, extra = todo.pop()
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        dist = available.get(name)
        if dist is None:
            pytest.fail(f"{text!r} (required by the wheel or its dependencies) is not installed in the test "
                        f"environment: run `make setup`", pytrace=False)
        if not requirement.specifier.contains(dist.version, prereleases=True):
            pytest.fail(f"{text!r}: the test environment has {dist.metadata['Name']} {dist.version}",
                        pytrace=False)
        first = name not in extras
        new = set(requirement.extras) - extras.get(name, set())
        if not first and not new:
            continue
        extras.setdefault(name, set()).update(new)
        for context in ([""] if first else []) + sorted(new):
            todo += [(child, context) for child in dist.requires or []]
    return [available[name] for name in sorted(extras)]


def link_into(venv: Path, dists: list[importlib.metadata.Distribution]) -> int:
    """Every file of `dists` (by their RECORD) at the same place in `venv`, hard-linked
    (copied across file systems); scripts (bin/) left out: theirs name another
    interpreter. The number of files."""
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    count = 0
    for dist in dists:
        if dist.files is None:
            pytest.fail(f"{dist.metadata['Name']} has no RECORD: cannot tell its files", pytrace=False)
        for entry in dist.files:
            source = Path(dist.locate_file(entry))
            target = Path(os.path.normpath(site / entry))
            if not target.is_relative_to(venv) or target.is_relative_to(venv / "bin") or not source.is_file():
                continue
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
            count += 1
    return count


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    assert not base.resolve().is_relative_to(REPO_ROOT.resolve())
    timings: dict[str, float] = {}
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP") and not key.startswith("AQUEDUCT_")}
    wheels = base / "wheels"
    timed(timings, "wheel", [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels),
                             str(source_copy(base / "source"))], cwd=base, env=env, timeout=INSTALL_TIMEOUT_S)
    (wheel,) = wheels.glob("aqueduct_usage-*.whl")
    venv = (base / "venv").resolve()
    timed(timings, "venv", [sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base, env=env, timeout=300)
    started = time.monotonic()
    files = link_into(venv, required_distributions(wheel))
    timings["dependencies"] = time.monotonic() - started
    timed(timings, "install", [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                               "--quiet", "--no-deps", "--no-index", str(wheel)],
          cwd=base, env=env, timeout=INSTALL_TIMEOUT_S)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(venv)
    workdir = base / "work"
    workdir.mkdir()
    where = timed(timings, "import", [str(venv / "bin" / "python"), "-c",
                                      "import sys, usage_lib, pandas, voila; print(usage_lib.__file__); "
                                      "print(pandas.__file__); print(voila.__file__); print(*sys.path, sep=chr(10))"],
                  cwd=workdir, env=env, timeout=120)
    package, pandas, voila, *path = where.stdout.strip().splitlines()
    for module in (package, pandas, voila):
        assert Path(module).resolve().is_relative_to(venv), where.stdout
    assert not [entry for entry in path if entry and Path(entry).resolve().is_relative_to(REPO_ROOT.resolve())], path
    print(f"\ninstall timings (s; {files} dependency files): "
          + ", ".join(f"{name} {seconds:.1f}" for name, seconds in timings.items()))
    return Installed(venv=venv, workdir=workdir, env=env, timings=timings)


@pytest.fixture(scope="module")
def demo(installed) -> Path:
    started = time.monotonic()
    result = installed.run("demo", "--db", "demo.sqlite3")
    installed.timings["demo"] = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert (installed.workdir / "demo.sqlite3").is_file() and (installed.workdir / "demo-router.yaml").is_file()
    return installed.workdir / "demo.sqlite3"


def test_demo_writes_a_database_and_router_config(demo):
    assert demo.stat().st_size > 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, deadline: float) -> tuple[int | None, str]:
    """GET / of the server on `port`: (status, body), the body as far as it came by
    `deadline` (Voila streams the page while its notebook runs)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=max(1.0, deadline - time.monotonic()))
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        chunks: list[bytes] = []
        while True:
            try:
                chunk = response.read1(65536)
            except TimeoutError:  # the deadline: what came so far
                break
            if not chunk:
                break
            chunks.append(chunk)
        return response.status, b"".join(chunks).decode("utf-8", "replace")
    finally:
        connection.close()


def test_serve_serves_the_page(installed, demo):
    port = free_port()
    log = installed.workdir / "serve.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            installed.command("serve", "--db", "demo.sqlite3", "--router-config", "demo-router.yaml",
                              "--viewer", VIEWER, "--port", str(port)),
            cwd=installed.workdir, env=installed.env, stdout=output, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        started = time.monotonic()
        deadline = started + SERVE_TIMEOUT_S
        status, body = None, ""
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, body = get(port, deadline)
                break
            except (ConnectionRefusedError, TimeoutError):  # not listening yet; no answer yet
                time.sleep(0.5)
        installed.timings["serve: first page"] = time.monotonic() - started
        served = log.read_text(errors="replace")
        assert status == 200, f"GET / answered {status}:\n{body[-2000:]}\n--- serve's output:\n{served[-4000:]}"
        # The notebook ran: its dashboard is a widget view, not an error.
        assert "application/vnd.jupyter.widget-view+json" in body, served[-4000:]
        assert "Traceback" not in served, served[-4000:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text(errors="replace")[-4000:]
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """After a failure too: SIGTERM (serve stops Voila, which runs in a session of its
    own), then SIGKILL to whatever of the tree is left."""
    if process.poll() is not None:
        return
    tree: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        tree = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    for leftover in tree:
        with contextlib.suppress(psutil.Error):
            leftover.kill()


def test_pdf_snapshot(installed, demo):
    if not any(Path(path).is_file() for path in (os.environ.get("AQUEDUCT_CHROMIUM") or "", "/usr/bin/chromium")
               if path) and not shutil.which("chromium"):
        unavailable("Chromium is not installed (apt-get install -y chromium)")
    started = time.monotonic()
    result = installed.run("snapshot", "--db", "demo.sqlite3", "--router-config", "demo-router.yaml",
                           "--viewer", VIEWER, "--out", "x.pdf")
    installed.timings["snapshot x.pdf"] = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert (installed.workdir / "x.pdf").read_bytes().startswith(b"%PDF")
    print("\ntimings (s): " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in installed.timings.items()))

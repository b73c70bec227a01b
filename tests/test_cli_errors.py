"""`usage-dashboard` as a real subprocess: mistakes a user can make end in one line on
stderr (status 2, never a traceback), a snapshot that cannot be written leaves nothing
behind, and a refused choice is noted once (issue 12, items 1, 4 and 5).

Runs as any user: as root (as in CI) the test of a directory one may not write into runs
the command without the capability to override file permissions; the read-only file
system is a tmpfs mounted read-only in a private mount namespace (`unshare`).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, unavailable
from tests.support.gateway import GatewayBuilder, build_tiny_org

NOW = "2026-11-24T12:00:00+00:00"
# <linux/capability.h>, <linux/prctl.h>
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24
COMMAND = [sys.executable, "-m", "usage_lib.cli"]


def run(*args: str, prefix: list[str] | None = None, **options) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), *COMMAND, *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT, **options)


def assert_one_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("usage-dashboard: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    builder = GatewayBuilder(f"sqlite:///{tmp_path_factory.mktemp('cli-errors')}/gateway.sqlite3")
    org = build_tiny_org(builder)
    builder.close()
    return org


def snapshot(org, out: Path | str, **options) -> subprocess.CompletedProcess:
    return run("snapshot", "--db", org.url, "--viewer", "root", "--org", "all", "--now", NOW, "--out", str(out), **options)


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".part"))


# -- database URLs --------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql://user@host:notaport/db", "postgresql://:::"])
def test_a_malformed_database_url_is_one_line(url):
    assert_one_line(run("report", "--db", url, "--viewer", "x"), "not a database URL")


# -- snapshots that cannot be written -------------------------------------------------------


@pytest.mark.parametrize("name", ["d.csv", "d.json", "d.html", "d.zip"])
def test_a_directory_in_the_way_is_one_line_and_leaves_nothing(gateway, tmp_path, name):
    (tmp_path / name).mkdir()
    assert_one_line(snapshot(gateway, tmp_path / name), str(tmp_path / name), "is a directory")
    assert sorted(path.name for path in tmp_path.iterdir()) == [name]


def test_a_csv_export_is_all_or_nothing(gateway, tmp_path):
    # The third of the four files cannot be written: none of them may appear.
    (tmp_path / "d.models.csv").mkdir()
    assert_one_line(snapshot(gateway, tmp_path / "d.csv"), "d.models.csv", "is a directory")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["d.models.csv"]


def test_a_path_below_a_file_is_one_line(gateway, tmp_path):
    (tmp_path / "plain").write_text("a file, not a directory")
    assert_one_line(snapshot(gateway, tmp_path / "plain" / "x.csv"), str(tmp_path / "plain" / "x.csv"))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("out", ["/proc/x.csv", "/proc/self/x.json"])
def test_a_file_system_that_takes_no_files_is_one_line(gateway, out):
    assert_one_line(snapshot(gateway, out), f"cannot write {out}")


def without_dac_override() -> None:
    """(In the child, before exec.) Drop the capabilities that let root ignore file
    permissions from the bounding set, so that the program run is bound by them."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_directory_without_write_permission_is_one_line(tmp_path, gateway):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    options: dict = {}
    if os.geteuid() == 0:
        # root writes anywhere: run the command as a root bound by the file permissions.
        options = {"preexec_fn": without_dac_override}
        try:
            probe = subprocess.run(["sh", "-c", f"touch {locked}/probe"], capture_output=True, text=True, **options)
        except subprocess.SubprocessError as exc:
            unavailable(f"cannot drop root's CAP_DAC_OVERRIDE here: {exc}")
        if probe.returncode == 0 or "ermission denied" not in probe.stderr:
            unavailable(f"root still writes into a read-only directory: {probe.stderr.strip()}")
    try:
        result = snapshot(gateway, locked / "x.csv", **options)
        assert_one_line(result, f"cannot write {locked / 'x.csv'}", "Permission denied")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def read_only_mount(folder: Path) -> list[str]:
    """A command prefix that runs the rest with a read-only tmpfs over `folder`, in a
    private mount namespace (nothing to clean up, nothing seen outside)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        unavailable("unshare (util-linux) is needed for a read-only file system")
    namespace = [unshare, "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        namespace[1:1] = ["--user", "--map-root-user"]
    prefix = [*namespace, "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"', str(folder)]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        unavailable(f"cannot mount a read-only tmpfs here: {probe.stderr.strip()}")
    return prefix


def test_a_read_only_file_system_is_one_line(gateway, tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    result = snapshot(gateway, target / "x.csv", prefix=read_only_mount(target))
    assert_one_line(result, f"cannot write {target / 'x.csv'}", "Read-only file system")
    assert list(target.iterdir()) == []


# -- a refused choice is noted once -----------------------------------------------------------


@pytest.mark.parametrize(
    "viewer, choice, note",
    [
        ("root", ["--org", "99999"], "unknown org '99999'"),
        ("olga", ["--org", "all"], "not open to org-admin"),
        ("ursula", ["--token", "999"], "unknown token '999'"),
    ],
)
@pytest.mark.parametrize("command", ["report", "snapshot"])
def test_a_refused_choice_is_noted_once(gateway, tmp_path, command, viewer, choice, note):
    args = ["--db", gateway.url, "--viewer", viewer, "--now", NOW, *choice]
    if command == "snapshot":
        args += ["--out", str(tmp_path / "x.json")]
    result = run(command, *args)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("note: ") and note in lines[0]


# -- serve refuses a viewer it does not know before it starts ---------------------------------


def test_serve_refuses_an_unknown_viewer_at_start_up(gateway):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([*COMMAND, "serve", "--db", gateway.url, "--viewer", "carl@example.org", "--port", str(port)],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # it serves: stop it, and Voila with it
        process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        pytest.fail(f"serve did not refuse the unknown viewer; it printed:\n{stdout}\n{stderr}"[-3000:])
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert_one_line(result, "unknown viewer 'carl@example.org'")
    assert "served at" not in stdout

"""`benchmarks/refresh.py` in a tiny mode: it runs, writes its JSON, every case is there,
our figures equal the per-figure baseline's, and a refresh sends at most 3 statements.

No timing assertions: this only keeps the benchmark working.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "refresh.py"
CASES = {"admin_all_1w", "org_admin_1d", "user_teams_1w"}
TINY = ["--sizes", "2000", "--repeat", "1", "--naive-repeat", "1", "--no-browser"]


def run_benchmark(tmp_path, *args: str) -> dict:
    out = tmp_path / "result.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, "--data-dir", str(tmp_path / "data"), "--out", str(out), *args],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| backend | requests | case |" in completed.stdout
    return json.loads(out.read_text())


def check(result: dict, backend: str) -> None:
    rows = [row for row in result["cases"] if row["backend"] == backend]
    assert {row["case"] for row in rows} == CASES
    for row in rows:
        assert row["requests"] == 2000
        assert 1 <= row["statements"] <= 3, row
        assert row["same_figures"], row["differences"]
        assert row["naive_statements"] > row["statements"]
        assert row["window_rows"] >= row["reach_rows"] > 0
        assert row["median_ms"] > 0 and row["rss_peak_mb"] > 0
    statements = next(t for t in result["targets"] if "statements" in t["target"])
    assert statements["met"] is True


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny run on SQLite (its folder and result), for the tests that need one: the
    run's databases are reused, as a second run of the benchmark reuses them."""
    folder = tmp_path_factory.mktemp("benchmark-sqlite")
    return folder, run_benchmark(folder, "--backends", "sqlite")


def test_benchmark_on_sqlite(sqlite_run):
    folder, result = sqlite_run
    check(result, "sqlite")
    assert (folder / "data" / "demo-2000.sqlite3").is_file()


def test_benchmark_measures_with_the_gateways_indexes_only(sqlite_run, tmp_path):
    shutil.copytree(sqlite_run[0] / "data", tmp_path / "data")  # a run's databases, as it left them
    path = tmp_path / "data" / "demo-2000.sqlite3"
    with sqlite3.connect(path) as conn:  # as an interrupted --experiments run leaves it
        conn.execute("CREATE INDEX bench_usage_covering ON management_request (timestamp, model)")
    result = run_benchmark(tmp_path, "--backends", "sqlite")
    assert result["data"]["request_indexes"]["sqlite-2000"] == [
        "management_request_model_ts_idx", "management_request_timestamp_idx",
        "management_request_token_ts_idx", "management_request_user_id_idx",
    ]


def test_benchmark_on_postgresql(tmp_path, fresh_postgres_database):
    url = fresh_postgres_database("bench")
    result = run_benchmark(tmp_path, "--backends", "postgresql", "--pg-db", url)
    check(result, "postgresql")
    assert result["environment"]["postgresql"]


MEASURE_PAGE = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import browser_timing, datasets
browser_timing.REST_S = 0.5
browser_timing.CHROMIUM = sys.argv[4]
result = browser_timing.measure_page(sys.argv[2], Path(sys.argv[3]), datasets.NOW, repeat=1, log=lambda *_: None)
print(json.dumps(result))
"""


@pytest.mark.browser
def test_served_page_timing(sqlite_run, chromium_executable):
    """Part 4 of the benchmark on the tiny database: both views measured, on the page's
    clock, each within the wall-clock time around it. (A process of its own: Playwright's
    sync API cannot start twice in one thread, and the tests' browser may be running.)"""
    data = sqlite_run[0] / "data"
    completed = subprocess.run(
        [sys.executable, "-c", MEASURE_PAGE, str(SCRIPT.parent), f"sqlite:///{data / 'demo-2000.sqlite3'}",
         str(data / "router.yaml"), chromium_executable],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["status"] == "measured", result
    for view in ("default", "all_orgs_1w"):
        timing = result[view]
        assert 0 < timing["first_paint_median_s"] <= timing["first_paint_wall_median_s"]
        assert 0 < timing["refresh_median_s"] <= timing["refresh_wall_median_s"]
    assert set(result["targets"]) == {"first paint < 3 s", "refresh < 0.5 s"}

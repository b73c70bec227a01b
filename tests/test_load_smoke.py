"""`benchmarks/load.py` in a small mode (what CI runs of the load benchmark): three viewers,
one of each role, on a real Voila server in header mode and real Chromium pages, two
refreshes each. Nothing fails, every figure a viewer saw equals their JSON report (no
cross-talk between kernels), a refresh sends at most 3 gateway statements, and after
the viewers leave the server is back to its pool (no kernel left): the pages closed
give their kernels back at once, the one that vanished (its browser context closed
without closing the page) is culled after the short idle timeout the benchmark starts
the server with (15 s: not much shorter, or a page still loading on a busy machine loses
its kernel too, docs/operations.md).

No timing assertions: this only keeps the benchmark working and checks what it checks.
(A process of its own: the benchmark drives Chromium with Playwright's asyncio API.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT

pytestmark = pytest.mark.browser

SCRIPT = REPO_ROOT / "benchmarks" / "load.py"
SMALL = ["--steps", "3", "--refreshes", "2", "--vanish-every", "3", "--idle-timeout", "15s", "--after", "5",
         "--requests", "5000", "--step-timeout", "120", "--max-seconds", "240"]


def test_load_benchmark_small(tmp_path, chromium_executable):
    out = tmp_path / "load.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), *SMALL, "--data-dir", str(tmp_path / "data"), "--out", str(out),
         "--chromium", chromium_executable],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )
    assert "| viewers | refreshes done / failed |" in completed.stdout, completed.stderr[-3000:]
    result = json.loads(out.read_text())
    [step] = result["steps"]
    assert step["roles"] == {"admin": 1, "org-admin": 1, "user": 1}
    assert step["vanished"] == 1
    assert not step["cut_short"] and not step["crashed"] and step["failures"] == [], step["failures"]
    assert (step["pages_opened"], step["refreshes_completed"], step["refreshes_failed"]) == (3, 6, 0)
    assert step["figures_checked"] == 6 and step["figures_differing"] == [], step["figures_differing"]
    assert step["kernels_peak"] == 3
    assert step["kernel_refreshes_logged"] == 3 + 6  # each page's first refresh, then two each
    assert 1 <= step["statements_per_refresh"]["min"] <= step["statements_per_refresh"]["max"] <= 3
    # 5 s after: the closed pages' kernels are gone; then the vanished page's is culled.
    assert step["pool_size"] == 0 and step["kernels_after"] <= 1
    assert step["kernels_at_end"] == 0 and step["released_after_s"] is not None
    assert step["kernels_culled"] == 1  # the vanished page's
    assert 0 < step["refresh_p50_s"] <= step["refresh_p95_s"] and 0 < step["first_paint_p50_s"]
    assert step["memory_peak_mb"] > step["memory_at_rest_mb"] > 0
    assert result["ok"] and completed.returncode == 0, completed.stderr[-3000:]

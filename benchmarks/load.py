"""Benchmark: many viewers of the served page at once (issue 16, item 1).

    .venv/bin/python benchmarks/load.py                        # 20, then 50 viewers (about 20 min on 2 cores)
    .venv/bin/python benchmarks/load.py --steps 5,10           # smaller steps
    # what CI runs (tests/test_load_smoke.py):
    .venv/bin/python benchmarks/load.py --steps 3 --refreshes 2 --vanish-every 3 --idle-timeout 15s --after 5

For each step (a number of viewers) a fresh `usage-dashboard serve` (real Voila, the
repository's configuration) serves the built-in demo organisation, rebuilt under
benchmarks/data/load/ at a fixed as-of time, on 127.0.0.1 in header identity mode, as
behind the authenticating proxy. One headless Chromium (Debian's, driven by Playwright)
holds one browser context per viewer, each sending its viewer's identity header; the
identities cycle through the three roles (the global admin, the org admins of Acme,
Globex and Initech, standard users of those three orgs). The viewers arrive
`--arrival-gap` seconds apart, open the page and do `--refreshes` refreshes each, with
`--think` seconds between them:

- global admin: span 1w, org All, drill down into the first org, then into its first
  token, span 1d;
- org admin and standard user (no org choice): span 1w, drill down into the first
  token, span 1d, back to the tokens, span 1h.

Then each leaves: most close the tab (the page's `beforeunload` shuts its kernel down),
every `--vanish-every`-th just disappears (its browser context is closed, as when a
laptop lid shuts), so its kernel waits for Voila's idle culling, which the server is
started with at `--idle-timeout` (`AQUEDUCT_KERNEL_IDLE_TIMEOUT`; 10 minutes in
production) so that the check below ends in minutes. Not much shorter: the culler
counts a kernel idle from the moment it ran the notebook until its page's websocket
connects, and under load that took longer than 3 s, 40 s with 20 viewers and 180 s
with 50 (the kernel was culled and the page never showed; docs/operations.md).

Measured per step:

- refreshes completed and failed (failed: not done within `--step-timeout`, or the page
  shows an error), and pages that never opened;
- refresh time: on the page's own clock, from the click (or the org choice) to the
  refreshed view shown (the address holds the new view, the table its heading, the
  page is no longer loading; polled every 50 ms): p50, p95, max;
- first paint: from navigation start to the tiles and the time chart drawn, on the
  page's clock (kernel start-up included: header mode keeps no preheated kernels);
- the server's kernels and the resident memory of its whole process tree (`serve`,
  Voila, kernels; RSS summed, so shared pages count more than once), sampled every
  second: at rest before, the peak during, and `--after` seconds after the last viewer
  left; then the server is watched until its kernel count is back to the pool size (0
  in header mode: no preheated kernels), at most the idle timeout and two culler looks,
  and when that happened is recorded;
- gateway statements per refresh and the kernels' own compute time, from the line
  each kernel logs per refresh (`AQUEDUCT_LOG_LEVEL=DEBUG`; `Dashboard.refresh`);
- CPU seconds used during the step by the server's process tree and by the client side
  (Chromium, Playwright, this process), which shares the machine here and would not in
  production: the server's CPU per viewer says what a viewer costs the server;
- that every viewer saw their own figures: after every refresh the page's tiles and
  table are read, its address turned into a selection (`core.urlstate`), and both are
  compared, after the step, with the JSON report (`snapshot.compute_report`, what
  `usage-dashboard report --format json` prints) for that viewer and selection.

The machine's load average is recorded before and after each step; Chromium runs on
the same machine and takes its share of the CPUs. Results go to benchmarks/results/
(gitignored) as JSON, each step's server output (Voila's and the kernels' logs) beside
it (`<results>.logs/`); the table is printed. Steps stop when `--max-seconds` is up (the
step under way is cut short and says so); the exit status is 1 if a refresh failed,
a page did not open, figures differed or kernels were not released.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from usage_lib.core.urlstate import selection_from_query  # noqa: E402
from usage_lib.core.usage import Selection  # noqa: E402
from usage_lib.demo import build_demo, demo_paths  # noqa: E402
from usage_lib.render import formatting  # noqa: E402
from usage_lib.render.labels import TILES  # noqa: E402
from usage_lib.serving.capture import CHROMIUM_ARGS  # noqa: E402
from usage_lib.serving import voila_process  # noqa: E402
from usage_lib.settings import ENV_KERNEL_IDLE_TIMEOUT, Settings  # noqa: E402
from usage_lib.snapshot import compute_report  # noqa: E402
from served import ServedDashboard  # noqa: E402

#: The demo's as-of time (that of the tests): a Tuesday noon, UTC.
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
DEMO_REQUESTS = 20_000
DEMO_SEED = 7
HEADER = "X-Forwarded-Email"
#: Refresh p95 above this is where the server "breaks" (issue 16).
BREAK_P95_S = 2.0

#: Viewers by role, cycled: role i % 3, the (i // 3)-th of its list.
VIEWERS = {
    "admin": ["admin@acme.example"],  # the demo's only global admin
    "org-admin": ["carol@acme.example", "hank@globex.example", "lou@initech.example"],
    "user": ["dave@acme.example", "ivy@globex.example", "milton@initech.example", "erin@acme.example",
             "judy@globex.example", "peter@initech.example", "frank@acme.example", "ken@globex.example"],
}
ROLES = ("admin", "org-admin", "user")
ORG_OF = {"acme": "Acme Research", "globex": "Globex Labs", "initech": "Initech"}

#: Until the first paint: tiles with figures and the time chart's bars.
FIRST_RENDER = """() => { const v = document.querySelector('.aq-tile-value');
  return v && v.textContent !== '\u2014' && !document.querySelector('.aq-dashboard.aq-loading')
    && document.querySelectorAll('.aq-timeseries rect.bar').length > 0 ? performance.now() : false; }"""
#: Note (page clock) the first click or choice from now on, before any handler of the page.
WATCH_ACTION = """() => { window.__aqActAt = null;
  const note = () => { if (window.__aqActAt === null) window.__aqActAt = performance.now(); };
  for (const kind of ['click', 'change']) document.addEventListener(kind, note, {capture: true, once: true}); }"""
#: A refresh is done when the page is not loading, the address holds `want` (a value;
#: null: absent; "*": present; "!x": present and not x) and the table's heading begins
#: with `heading`; then the page's clock. An error shown ends the wait too ("failed").
DONE = """([want, heading]) => {
  if (document.querySelector('.aq-dashboard.aq-loading')) return false;
  if (document.querySelector('.aq-dashboard.aq-failed')) return 'failed';
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(want)) {
    const ok = v === null ? !q.has(k) : v === '*' ? q.has(k)
      : v.startsWith('!') ? q.has(k) && q.get(k) !== v.slice(1) : q.get(k) === v;
    if (!ok) return false;
  }
  if (heading && ![...document.querySelectorAll('.aq-thead .aq-th')].some(b => b.textContent.trim().startsWith(heading)))
    return false;
  return performance.now(); }"""
#: What the viewer sees: tiles, the table's rows (cells as `row_cells` writes them), the address.
SHOWN = """() => ({
  tiles: Object.fromEntries([...document.querySelectorAll('.aq-tile')].map(t =>
      [t.querySelector('.aq-tile-label').textContent, t.querySelector('.aq-tile-value').textContent])),
  rows: [...document.querySelectorAll('.aq-table .aq-row')].map(r => [...r.querySelectorAll('.aq-td')].map(c =>
      c.querySelector('.aq-name-text') ? c.querySelector('.aq-name-text').textContent : c.textContent)),
  query: location.search.replace(/^\\?/, '')})"""


# --------------------------------------------------------------------------------------
# Viewers, their refreshes, and the figures they must see
# --------------------------------------------------------------------------------------


def viewer_identities(count: int) -> list[tuple[str, str]]:
    """(email, role) of `count` viewers, the roles taking turns (see `VIEWERS`)."""
    return [(VIEWERS[ROLES[i % 3]][(i // 3) % len(VIEWERS[ROLES[i % 3]])], ROLES[i % 3]) for i in range(count)]


@dataclass(frozen=True)
class Step:
    """One refresh a viewer asks for: what it does on the page and how its end shows."""

    name: str
    act: Callable[[Any], Any]  # async (page) -> None
    want: dict[str, str | None]
    heading: str | None = None


def _span(span: str) -> Step:
    async def act(page) -> None:
        await page.locator(".aq-span button", has_text=re.compile(f"^{span}$")).click()
    return Step(f"span {span}", act, {"span": span})


async def _first_row(page) -> None:
    """Open the table's first row as a person does: on the transparent target laid over it."""
    await page.locator(".aq-row-targets .widget-radio-box > label").first.click()


def refresh_plan(role: str) -> list[Step]:
    """The refreshes of a viewer of `role`, in order (see the module docstring)."""
    if role == "admin":
        async def all_orgs(page) -> None:
            await page.select_option(".aq-org-select select", label="All")
        return [_span("1w"), Step("org All", all_orgs, {"org": "all"}, "Organization"),
                Step("drill org", _first_row, {"org": "!all", "token": None}, "API Key"),
                Step("drill token", _first_row, {"token": "*"}, "User ID"), _span("1d")]

    async def back(page) -> None:
        await page.locator(".aq-back-tokens").click()
    return [_span("1w"), Step("drill token", _first_row, {"token": "*"}, "User ID"), _span("1d"),
            Step("back to tokens", back, {"token": None}, "API Key"), _span("1h")]


def shown_figures(report: dict) -> dict:
    """The tiles and table rows a page shows for a JSON report (`usage-dashboard report
    --format json`), as the page writes them."""
    tiles = {label: fmt(report["metrics"][key]) for key, label, fmt in TILES}
    currency = report["cost"]["currency"]
    tiles["Cost"] = formatting.money(Decimal(report["cost"]["total"]), currency)
    kind = report["top"]["kind"]
    rows = []
    for row in report["top"]["rows"]:
        name = (row.get("service_account") or row["name"]) if kind == "token" else row["name"]
        cells = [str(row["rank"]), name or "N/A"]
        cells += [f"{row[key]:,}" for key in ("requests", "input_tokens", "output_tokens", "total_tokens")]
        cells += [formatting.money(Decimal(row["cost"]), currency),
                  "new" if row.get("new") else formatting.change(row.get("change"))]
        if kind == "token":
            cells += [row["owner_email"] or "N/A", row["service_account"] or "N/A"]
        rows.append(cells)
    return {"tiles": tiles, "rows": rows}


def check_figures(settings: Settings, seen: list[dict]) -> list[dict]:
    """Compare what each viewer saw (`seen`: viewer, query, tiles, rows) with the JSON
    report of that viewer and the selection the page's address names; the differences."""
    reports: dict[tuple[str, str], dict] = {}
    problems = []
    for entry in seen:
        key = (entry["viewer"], entry["query"])
        if key not in reports:
            selection = selection_from_query(entry["query"], settings.view)
            data = compute_report(settings, selection, entry["viewer"]).data
            reports[key] = shown_figures(json.loads(json.dumps(data)))
        expected = reports[key]
        for part in ("tiles", "rows"):
            if entry[part] != expected[part]:
                problems.append({"viewer": entry["viewer"], "query": entry["query"], "after": entry["after"],
                                 "part": part, "shown": entry[part], "report": expected[part]})
    return problems


# --------------------------------------------------------------------------------------
# The server, and what it holds
# --------------------------------------------------------------------------------------


def demo_database(data_dir: Path, requests: int) -> tuple[str, Path]:
    """The demo organisation at `NOW` (built once per size under `data_dir`): URL, router config."""
    path = data_dir / f"demo-{requests}.sqlite3"
    url, router = demo_paths(path)
    if not path.exists() or not router.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        partial = data_dir / f"building-{requests}.sqlite3"
        partial.unlink(missing_ok=True)
        partial_url, partial_router = demo_paths(partial)
        build_demo(partial_url, partial_router, requests=requests, seed=DEMO_SEED, now=NOW)
        partial_router.replace(router)
        partial.replace(path)
    return url, router


class Server(ServedDashboard):
    """`usage-dashboard serve` in header mode on a free loopback port, its output kept."""

    def __init__(self, url: str, router: Path, idle_timeout: str, startup_timeout: float = 120) -> None:
        super().__init__(["--db", url, "--router-config", str(router)],
                         {"AQUEDUCT_IDENTITY": "header", "AQUEDUCT_IDENTITY_HEADER": HEADER,
                          "AQUEDUCT_NOW": NOW.isoformat(), "AQUEDUCT_KERNEL_IDLE_TIMEOUT": idle_timeout,
                          "AQUEDUCT_LOG_LEVEL": "DEBUG"},
                         startup_timeout)

    def tree(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        return []

    def kernels(self) -> int:
        """Kernels running under the server, by the ids in their connection files' names
        (a process a kernel is forking carries its command line for a moment)."""
        ids = set()
        for process in self.tree():
            with contextlib.suppress(psutil.Error):
                found = re.search(r"kernel-([0-9a-f-]{36})\.json", " ".join(process.cmdline()))
                if found:
                    ids.add(found.group(1))
        return len(ids)

    def memory_mb(self) -> float:
        """Resident memory of the server's process tree, summed (MiB)."""
        total = 0
        for process in self.tree():
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total / 2**20


REFRESH_LINE = re.compile(r"refresh of \S+ .*: compute ([0-9.]+) s, widgets ([0-9.]+) s, (\d+) gateway statements")


def kernel_refreshes(output: list[str]) -> list[tuple[float, float, int]]:
    """(compute s, widgets s, statements) of every refresh the kernels logged."""
    return [(float(m.group(1)), float(m.group(2)), int(m.group(3)))
            for m in map(REFRESH_LINE.search, output) if m]


# --------------------------------------------------------------------------------------
# One step
# --------------------------------------------------------------------------------------


@dataclass
class ViewerResult:
    index: int
    viewer: str
    role: str
    opened: bool = False
    first_paint_s: float | None = None
    refresh_s: list[float] = field(default_factory=list)
    refresh_wall_s: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seen: list[dict] = field(default_factory=list)


async def run_viewer(browser, server_url: str, index: int, viewer: str, role: str, refreshes: int, think_s: float,
                     timeout_s: float, vanish: bool) -> ViewerResult:
    """Viewer number `index`: open the page, do `refreshes` refreshes, leave (or vanish)."""
    result = ViewerResult(index, viewer, role)
    plan = refresh_plan(role)[:refreshes]
    context = await browser.new_context(viewport={"width": 1366, "height": 768}, extra_http_headers={HEADER: viewer})
    try:
        page = await context.new_page()
        try:
            await page.goto(server_url, timeout=timeout_s * 1000, wait_until="commit")
            result.first_paint_s = await (await page.wait_for_function(
                FIRST_RENDER, timeout=timeout_s * 1000, polling=100)).json_value() / 1000
            result.opened = True
        except Exception as exc:  # noqa: BLE001 - a page that never opened is a figure
            result.failed += [f"open: {type(exc).__name__}"] + [f"{step.name}: not reached" for step in plan]
            return result
        for number, step in enumerate(plan):
            await asyncio.sleep(think_s)
            await page.evaluate(WATCH_ACTION)
            began = time.perf_counter()
            try:
                await step.act(page)
                done = await (await page.wait_for_function(
                    DONE, arg=[step.want, step.heading], timeout=timeout_s * 1000, polling=50)).json_value()
            except Exception as exc:  # noqa: BLE001 - a refresh not done in time is a failed one
                result.failed += [f"{step.name}: {type(exc).__name__}"] + [f"{s.name}: not reached" for s in plan[number + 1:]]
                break
            if done == "failed":
                result.failed.append(f"{step.name}: the page shows an error")
                break
            wall = time.perf_counter() - began
            acted = await page.evaluate("() => window.__aqActAt")
            result.refresh_s.append((done - acted) / 1000 if acted is not None else wall)
            result.refresh_wall_s.append(wall)
            result.seen.append({"viewer": viewer, "after": step.name, **await page.evaluate(SHOWN)})
        if not vanish:
            await page.close(run_before_unload=True)  # as a person closes the tab: Voila shuts the kernel down
            with contextlib.suppress(Exception):
                await page.wait_for_event("close", timeout=5000)
    finally:
        await context.close()
    return result


def percentile(values: list[float], share: float) -> float | None:
    """The `share` quantile (nearest rank) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


class CpuUse:
    """CPU seconds used since it was made, by the server's process tree and by the
    rest of this benchmark's (Playwright, Chromium, this process): `look()` often, so
    that a process that ends (a kernel) is counted up to its last look."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.start: dict[tuple[int, float], float] = {}
        self.last: dict[tuple[int, float], float] = {}
        self.on_server: set[tuple[int, float]] = set()
        self.look()
        self.start = dict(self.last)

    def look(self) -> None:
        server = {process.pid for process in self.server.tree()}
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                key = (process.pid, process.create_time())
                times = process.cpu_times()
                self.last[key] = times.user + times.system
                if process.pid in server:
                    self.on_server.add(key)

    def seconds(self) -> dict[str, float]:
        used = {key: value - self.start.get(key, 0.0) for key, value in self.last.items()}
        return {"server_cpu_s": sum(v for k, v in used.items() if k in self.on_server),
                "client_cpu_s": sum(v for k, v in used.items() if k not in self.on_server)}


async def run_step(browser, server: Server, count: int, args, deadline: float, log=print) -> dict:
    """`count` viewers against `server`; sampling, then the after-run check."""
    samples: list[tuple[float, int, float]] = []  # (s since start, kernels, MiB)
    started = time.monotonic()
    sampling = True

    cpu = CpuUse(server)

    async def sample() -> None:
        while sampling:
            samples.append((time.monotonic() - started, server.kernels(), server.memory_mb()))
            cpu.look()
            await asyncio.sleep(1.0)

    rest = (server.kernels(), server.memory_mb())
    load_before = os.getloadavg()
    sampler = asyncio.create_task(sample())

    async def arrive(index: int, viewer: str, role: str) -> ViewerResult:
        await asyncio.sleep(index * args.arrival_gap)
        vanish = args.vanish_every > 0 and index % args.vanish_every == args.vanish_every - 1
        return await run_viewer(browser, server.url, index, viewer, role, args.refreshes, args.think, args.step_timeout, vanish)

    identities = viewer_identities(count)
    tasks = [asyncio.create_task(arrive(i, viewer, role)) for i, (viewer, role) in enumerate(identities)]
    done, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic()))
    cut_short = bool(pending)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    results = [task.result() for task in done if task.exception() is None]
    crashed = [repr(task.exception()) for task in done if task.exception() is not None]
    viewers_done = time.monotonic() - started
    pool = 0  # header mode keeps no preheated kernels
    culling = voila_process.culling({ENV_KERNEL_IDLE_TIMEOUT: args.idle_timeout})
    # The vanished pages' kernels go once idle for the timeout, found at the next look.
    longest = culling["MappingKernelManager.cull_idle_timeout"] + 2 * culling["MappingKernelManager.cull_interval"]
    log(f"  {count} viewers done in {viewers_done:.0f} s; watching the server for {args.after:.0f} s "
        f"(and until its kernels are back to {pool}, at most {longest} s)")

    # After: the server `after` seconds later, and when its kernels were back to the pool.
    after = None
    while True:
        await asyncio.sleep(1.0)
        waited = time.monotonic() - started - viewers_done
        if after is None and waited >= args.after:
            after = (server.kernels(), server.memory_mb())
        if after is not None and (server.kernels() == pool or waited >= max(args.after, longest)):
            break
    sampling = False
    await sampler
    used = cpu.seconds()
    released = (server.kernels(), server.memory_mb())
    samples.append((time.monotonic() - started, *released))  # the look that ended the watch
    back_at = None
    for at, kernels, _mb in samples:
        if at >= viewers_done and kernels == pool and back_at is None:
            back_at = at - viewers_done
        elif kernels != pool:
            back_at = None
    during = [s for s in samples if s[0] <= viewers_done]

    refresh = [s for r in results for s in r.refresh_s]
    refresh_wall = [s for r in results for s in r.refresh_wall_s]
    paints = [r.first_paint_s for r in results if r.first_paint_s is not None]
    logged = kernel_refreshes(server.output)
    culled = sum(1 for line in server.output if "Culling" in line and "inactivity" in line)
    statements = [n for _c, _w, n in logged]
    compute = [c for c, _w, _n in logged]
    mismatches = check_figures(args.settings, [entry for r in results for entry in r.seen])
    return {
        "viewers": count,
        "roles": {role: sum(1 for _v, r in identities if r == role) for role in ROLES},
        "viewer_emails": sorted({viewer for viewer, _r in identities}),
        "orgs": sorted({ORG_OF[viewer.split("@")[1].split(".")[0]] for viewer, _r in identities}),
        "vanished": sum(1 for i in range(count) if args.vanish_every > 0 and i % args.vanish_every == args.vanish_every - 1),
        "cut_short": cut_short,
        "crashed": crashed,
        "pages_opened": sum(r.opened for r in results),
        "pages_failed": count - sum(r.opened for r in results),
        "refreshes_planned": count * args.refreshes,
        "refreshes_completed": len(refresh),
        "refreshes_failed": count * args.refreshes - len(refresh),
        "failures": [f"viewer {r.index} ({r.viewer}): {f}" for r in results for f in r.failed],
        "refresh_p50_s": percentile(refresh, 0.5), "refresh_p95_s": percentile(refresh, 0.95),
        "refresh_max_s": max(refresh, default=None),
        "refresh_wall_p50_s": percentile(refresh_wall, 0.5), "refresh_wall_p95_s": percentile(refresh_wall, 0.95),
        "first_paint_p50_s": percentile(paints, 0.5), "first_paint_p95_s": percentile(paints, 0.95),
        "first_paint_max_s": max(paints, default=None),
        "kernels_at_rest": rest[0], "memory_at_rest_mb": rest[1],
        "kernels_peak": max((k for _a, k, _m in during), default=0),
        "memory_peak_mb": max((m for _a, _k, m in during), default=rest[1]),
        "kernels_after": after[0], "memory_after_mb": after[1], "after_s": args.after,
        "kernels_at_end": released[0], "memory_at_end_mb": released[1],
        "pool_size": pool,
        "kernels_culled": culled,
        "released_after_s": back_at,
        "kernel_refreshes_logged": len(logged),
        "statements_per_refresh": {"min": min(statements, default=None), "max": max(statements, default=None),
                                   "mean": statistics.fmean(statements) if statements else None},
        "kernel_compute_p50_s": percentile(compute, 0.5), "kernel_compute_p95_s": percentile(compute, 0.95),
        "figures_checked": sum(len(r.seen) for r in results),
        "figures_differing": mismatches,
        "viewers_done_s": viewers_done,
        **used, "server_cpu_per_viewer_s": used["server_cpu_s"] / count,
        "load_before": list(load_before), "load_after": list(os.getloadavg()),
        "samples": [{"at_s": round(a, 1), "kernels": k, "memory_mb": round(m)} for a, k, m in samples],
    }


def step_ok(row: dict) -> bool:
    """A step held: every page opened and refreshed in time, showed its viewer's figures,
    and left no kernel behind."""
    return (not row["cut_short"] and not row["crashed"] and row["pages_failed"] == 0 and row["refreshes_failed"] == 0
            and not row["figures_differing"] and row["kernels_at_end"] == row["pool_size"])


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------


def _environment() -> dict:
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        model = None
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    chromium = subprocess.run([args_chromium(), "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "chromium": chromium, "git": git}


def args_chromium() -> str:
    """The Chromium the tests use (tests/support/browser.py): $AQUEDUCT_TEST_CHROMIUM or Debian's."""
    return os.environ.get("AQUEDUCT_TEST_CHROMIUM", "/usr/bin/chromium")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = ["| viewers | refreshes done / failed | refresh p50 / p95 (s) | first paint p50 / p95 (s) "
             "| kernels peak / after / back to 0 after (s) | memory rest / peak / after (MiB) | statements per refresh "
             "| CPU s server / client | figures = report | load 1-min before / after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        stm = row["statements_per_refresh"]
        pages_note = f" ({row['pages_failed']} pages not opened)" if row["pages_failed"] else ""
        lines.append(
            f"| {row['viewers']}{' (cut short)' if row['cut_short'] else ''} "
            f"| {row['refreshes_completed']} / {row['refreshes_failed']}"
            f"{pages_note} "
            f"| {_fmt(row['refresh_p50_s'])} / {_fmt(row['refresh_p95_s'])} "
            f"| {_fmt(row['first_paint_p50_s'], 1)} / {_fmt(row['first_paint_p95_s'], 1)} "
            f"| {row['kernels_peak']} / {row['kernels_after']} / {_fmt(row['released_after_s'], 0)} "
            f"| {row['memory_at_rest_mb']:.0f} / {row['memory_peak_mb']:.0f} / {row['memory_after_mb']:.0f} "
            f"| {stm['min']}-{stm['max']} ({row['kernel_refreshes_logged']} logged) "
            f"| {row['server_cpu_s']:.0f} / {row['client_cpu_s']:.0f} "
            f"| {row['figures_checked'] - len(row['figures_differing'])} of {row['figures_checked']} "
            f"| {row['load_before'][0]:.2f} / {row['load_after'][0]:.2f} |")
    return "\n".join(lines)


async def run(args, log=print) -> dict:
    from playwright.async_api import async_playwright

    url, router = demo_database(args.data_dir, args.requests)
    args.settings = Settings(db_url=url, router_config=router, view=Selection(tz="UTC", now=NOW))
    deadline = time.monotonic() + args.max_seconds
    rows = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS,
                                                   timeout=60_000)
        try:
            for count in args.steps:
                if time.monotonic() > deadline - 30:
                    log(f"step {count}: skipped, --max-seconds is up")
                    break
                log(f"step {count}: starting a server (load {os.getloadavg()[0]:.2f})")
                server = Server(url, router, args.idle_timeout)
                try:
                    row = await run_step(browser, server, count, args, deadline, log)
                finally:
                    server.close()
                if args.server_logs is not None:
                    args.server_logs.mkdir(parents=True, exist_ok=True)
                    (args.server_logs / f"server-{count}.log").write_text("".join(server.output))
                rows.append(row)
                log(table([row]).splitlines()[-1])
        finally:
            await browser.close()
    breaks = next((row["viewers"] for row in rows
                   if row["refresh_p95_s"] is not None and row["refresh_p95_s"] > BREAK_P95_S), None)
    return {"steps": rows, "p95_passes_2s_at": breaks, "ok": bool(rows) and all(map(step_ok, rows))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="20,50", help="viewer counts, one server each (default 20,50)")
    parser.add_argument("--refreshes", type=int, default=5, choices=range(1, 6), help="refreshes per viewer (1-5)")
    parser.add_argument("--arrival-gap", type=float, default=0.2, help="seconds between two viewers' arrivals")
    parser.add_argument("--think", type=float, default=1.0, help="seconds a viewer waits before each refresh")
    parser.add_argument("--vanish-every", type=int, default=5,
                        help="every n-th viewer leaves without closing the page (0: none)")
    parser.add_argument("--idle-timeout", default="180s", help="the server's idle-kernel cull (AQUEDUCT_KERNEL_IDLE_TIMEOUT)")
    parser.add_argument("--after", type=float, default=60.0, help="seconds to watch the server after the viewers left")
    parser.add_argument("--step-timeout", type=float, default=300.0, help="seconds a page may take to open or refresh")
    parser.add_argument("--max-seconds", type=float, default=2400.0, help="the whole run's time limit")
    parser.add_argument("--requests", type=int, default=DEMO_REQUESTS, help="the demo database's requests")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data" / "load")
    parser.add_argument("--chromium", default=args_chromium())
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/load-<time>.json)")
    args = parser.parse_args(argv)
    started = datetime.now(timezone.utc)
    out = args.out or HERE / "results" / f"load-{started:%Y%m%dT%H%M%S}.json"
    #: Each step's server output (Voila's log and the kernels'), beside the results.
    args.server_logs = out.with_suffix(".logs")
    args.steps = [int(part) for part in args.steps.split(",") if part.strip()]
    if not args.steps or min(args.steps) < 1 or max(args.steps) > 200:
        parser.error("--steps: viewer counts between 1 and 200")
    if not os.access(args.chromium, os.X_OK):
        parser.error(f"no Chromium at {args.chromium} (install the Debian package `chromium`)")

    environment = _environment()  # before: the code measured, not the code at the end
    result = asyncio.run(run(args, log=lambda message: print(message, file=sys.stderr, flush=True)))
    result.update(
        date=started.isoformat(timespec="seconds"), duration_s=(datetime.now(timezone.utc) - started).total_seconds(),
        command=" ".join([Path(sys.executable).name, *sys.argv]),
        settings={key: getattr(args, key) for key in ("refreshes", "arrival_gap", "think", "vanish_every",
                                                       "idle_timeout", "after", "step_timeout", "requests")},
        environment=environment,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(result["steps"]))
    print(f"\np95 refresh passes {BREAK_P95_S:g} s at: {result['p95_passes_2s_at'] or 'none of these steps'}; "
          f"results: {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

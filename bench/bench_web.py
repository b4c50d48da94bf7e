"""Bench: the commander's web map in headless Chromium — page weight, time to the first idle
map, and tile requests per pan.

- **Page weight**: bytes transferred (encoded, as on the wire, from the DevTools protocol) from
  navigating to ``/`` with a session cookie until the map is first idle, split into the page's
  own files, the vendored libraries, API answers and tiles; cold (first visit, a fresh browser
  profile) and warm (second visit: what is cached is revalidated or reused).
- **Time to the first idle map**: from the navigation's start to the first moment the map is
  loaded with every tile drawn (MapLibre ``loaded() && areTilesLoaded()``), median of
  ``--runs`` cold loads.
- **Tile requests per pan**: at a zoom, pan by half the viewport onto new ground (four steps
  east, four south), wait for the map to be idle, count ``/tiles/`` requests per step.

Database: a clone of the tiny demo template on the test cluster (the default), a database loaded
with the demo city at ``--scale demo|city`` (kept for the next run with ``--database NAME``), or
any running server with ``--url`` (e.g. ``make demo``). These machines are shared and small:
read the figures as orders of magnitude. No thresholds.

    .venv/bin/python bench/bench_web.py [--scale tiny|demo|city] [--database NAME]
        [--url http://127.0.0.1:8000] [--user t330302006] [--runs 5] [--zoom 15 17]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "Demo-Wenzhou-2026"
VIEWPORT = {"width": 1440, "height": 900}


@dataclass
class Transfer:
    """Bytes and requests of one page load, by kind."""

    bytes: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    api: list[tuple[int, str]] = field(default_factory=list)

    def add(self, kind: str, size: int) -> None:
        """Count one finished request."""
        self.bytes[kind] = self.bytes.get(kind, 0) + size
        self.requests[kind] = self.requests.get(kind, 0) + 1

    @property
    def total(self) -> int:
        """Return all bytes."""
        return sum(self.bytes.values())


def kind_of(url: str) -> str:
    """Classify a request: tiles, api, vendor (pinned libraries), or the app's own files."""
    path = url.split("://", 1)[-1].split("/", 1)[-1]
    if path.startswith("tiles/") and not path.startswith("tiles/style.json"):
        return "tiles"
    if path.startswith(("api/", "tiles/style.json")) or path == "tiles":
        return "api"
    if path.startswith("vendor/"):
        return "vendor"
    return "app"


class Recorder:
    """Collect finished requests with their sizes as transferred.

    The page's own requests come from the DevTools protocol (``encodedDataLength``: headers and
    body on the wire, 0 for a cache hit). Tiles are fetched by MapLibre's web workers, which
    that session does not see: Playwright reports them, and ``Request.sizes()`` gives what
    crossed the wire (tiles are ``no-cache`` with an ETag: a 304 revalidation is headers only,
    though Playwright shows the cached answer as a 200 with its length).
    """

    def __init__(self, page) -> None:
        self.page = page
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.urls: dict[str, str] = {}
        self.done: list[tuple[str, int]] = []
        self.tiles: list = []
        self.cdp.on("Network.requestWillBeSent",
                    lambda e: self.urls.__setitem__(e["requestId"], e["request"]["url"]))
        self.cdp.on("Network.loadingFinished", self._page_finished)
        page.on("requestfinished", self._worker_finished)

    def _page_finished(self, e: dict) -> None:
        url = self.urls.get(e["requestId"], "")
        if url.startswith("http") and kind_of(url) != "tiles":
            self.done.append((url, int(e["encodedDataLength"])))

    def _worker_finished(self, request) -> None:
        # Sized later, in take(): no protocol round trip inside the event handler.
        if kind_of(request.url) == "tiles":
            self.tiles.append(request)

    def take(self) -> Transfer:
        """Return what finished since the last call, and start afresh."""
        self.page.wait_for_timeout(200)  # let the last events arrive
        for request in self.tiles:
            sizes = request.sizes()
            self.done.append((request.url, sizes["responseBodySize"]
                              + sizes["responseHeadersSize"]))
        self.tiles = []
        out = Transfer()
        for url, size in self.done:
            out.add(kind_of(url), size)
            if kind_of(url) == "api":
                out.api.append((size, url.split("/", 3)[-1][:70]))
        self.done = []
        return out


IDLE = """() => { const m = window.gridgov && window.gridgov.map;
    return !!(m && m.loaded() && m.areTilesLoaded()); }"""


def first_idle_ms(page, base: str) -> dict[str, float]:
    """Navigate to the map; return ms from navigation start to the app's marks (map created,
    style and first tiles loaded, first idle)."""
    page.goto(base + "/")
    page.wait_for_function(IDLE, timeout=120_000, polling=50)
    page.wait_for_function("() => performance.getEntriesByName('gridgov:map-idle').length",
                           timeout=60_000)
    return page.evaluate("""() => Object.fromEntries(performance.getEntriesByType('mark')
        .filter(m => m.name.startsWith('gridgov:')).map(m => [m.name.slice(8), m.startTime]))""")


def pan_requests(page, rec: Recorder, zoom: float, steps: int = 4) -> list[int]:
    """Pan half a viewport onto new ground, step by step; return tile requests per step."""
    page.evaluate("(z) => { window.gridgov.map.jumpTo({zoom: z}); }", zoom)
    page.wait_for_function(IDLE, timeout=60_000, polling=50)
    rec.take()
    counts = []
    for dx, dy in [(0.5, 0)] * steps + [(0, 0.5)] * steps:
        page.evaluate("""([dx, dy]) => new Promise((resolve) => {
            const m = window.gridgov.map; const c = m.getCanvas();
            m.once('idle', () => resolve());  // not the event: it holds the whole map
            m.panBy([dx * c.clientWidth, dy * c.clientHeight], {animate: false}); })""", [dx, dy])
        counts.append(rec.take().requests.get("tiles", 0))
    return counts


def fmt_transfer(t: Transfer) -> str:
    """One line per load: total and by kind."""
    parts = [f"{k} {t.bytes.get(k, 0) / 1024:.0f} KiB/{t.requests.get(k, 0)}"
             for k in ("app", "vendor", "api", "tiles")]
    return f"{t.total / 1024:8.0f} KiB  ({', '.join(parts)} requests)"


@contextlib.contextmanager
def local_server(scale: str, keep: str | None) -> Iterator[str]:
    """Serve a database holding the demo city in this process; yield the base URL."""
    from bench.common import bench_clone
    from tests.conftest import make_settings
    from tests.support.live import app_with, serve

    with bench_clone("web", scale=scale, keep=keep) as (pg, name), \
            serve(app_with(make_settings(pg, name, jobs_enabled=False))) as base:
        yield base


def run(base: str, user: str, runs: int, zooms: list[float]) -> None:
    """Measure and print."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)

        def visitor():
            """A new browser profile (empty cache) with a session cookie; its page, recorder."""
            context = browser.new_context(viewport=VIEWPORT, locale="zh-CN",
                                          timezone_id="Asia/Shanghai")
            r = context.request.post(base + "/api/v1/auth/login",
                                     data={"username": user, "password": PASSWORD})
            assert r.ok, r.text()
            page = context.new_page()
            return context, page, Recorder(page)

        # Cold: a first visit each time. (The DevTools cache switch does not reach the web
        # workers that fetch the tiles: a fresh profile is the only honest empty cache.)
        cold_ms, cold = [], []
        for _ in range(runs):
            context, page, rec = visitor()
            cold_ms.append(first_idle_ms(page, base))
            cold.append(rec.take())
            context.close()
        context, page, rec = visitor()
        first_idle_ms(page, base)  # fill the cache
        rec.take()
        warm_ms = first_idle_ms(page, base)
        warm = rec.take()
        print(f"server {base}, user {user}, viewport {VIEWPORT['width']}×{VIEWPORT['height']}")
        idle = [m["map-idle"] for m in cold_ms]
        for mark in ("map-created", "map-load", "map-idle"):
            values = [m[mark] for m in cold_ms]
            print(f"navigation → {mark:11s} cold: median {statistics.median(values):6.0f} ms "
                  f"(min {min(values):.0f}, max {max(values):.0f}, {runs} runs)")
        print(f"navigation → map-idle    warm: {warm_ms['map-idle']:6.0f} ms")
        print(f"  (first idle map = style, every tile of the view and the client's own layers "
              f"drawn; median cold {statistics.median(idle):.0f} ms)")
        print(f"page weight, cold    : {fmt_transfer(cold[len(cold) // 2])}")
        print(f"page weight, warm    : {fmt_transfer(warm)}")
        share = cold[0].bytes.get("vendor", 0) / max(1, cold[0].total)
        print(f"vendored libraries are {share:.0%} of a cold load (MapLibre GL JS and its CSS, "
              "as sent: gzip when the browser asks; ECharts loads with the first chart)")
        largest = ", ".join(f"{u} {b / 1024:.0f} KiB" for b, u in sorted(cold[0].api)[::-1][:4])
        print(f"largest API answers  : {largest}")
        for z in zooms:
            counts = pan_requests(page, rec, z)
            print(f"tile requests per half-viewport pan at z{z:g}: mean "
                  f"{statistics.mean(counts):.1f} (per step {counts})")
        browser.close()


def main() -> None:
    """Parse arguments and run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running gridgov (default: start one on the test cluster)")
    ap.add_argument("--scale", default="tiny", choices=("tiny", "demo", "city"))
    ap.add_argument("--database", help="keep (and reuse) the bench database under this name")
    ap.add_argument("--user", default="t330302006", help="a demo login (township commander)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--zoom", type=float, nargs="+", default=[15.0, 17.0])
    args = ap.parse_args()
    if args.url:
        run(args.url.rstrip("/"), args.user, args.runs, args.zoom)
        return
    with local_server(args.scale, args.database) as base:
        run(base, args.user, args.runs, args.zoom)


if __name__ == "__main__":
    main()

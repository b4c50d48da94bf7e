"""Bench: the grid worker's phone page (/m/) — page weight, and uploads and wake-ups per hour
of patrol.

On a clone of the tiny demo template, with the app served in this process (every response's
bytes counted at the server, so service-worker fetches are counted too) and Debian's headless
Chromium as the phone (390×844, touch, geolocation granted):

1. Page weight: bytes served for the first visit (the page, its modules and the service
   worker's precache, to the login form), after login, for the first map (MapLibre, loaded
   lazily), and for a reload with the service worker in place (only API answers should cross
   the network). gridgov serves static files uncompressed; the gzip size a reverse proxy
   would send is printed next to the shell's size.
2. Uploads and wake-ups per hour of patrol at the client's default timers, computed from the
   DEFAULTS in web_map/m/js/config.js and the outbox's batching rule (a batch is sealed on a
   sample tick once the oldest waiting sample is ``uploadSeconds`` old), then confirmed by a
   patrol run at an accelerated clock (same ratios, ``--speed`` times faster) counting the
   uploads at the server and the page's timer firings.

    .venv/bin/python bench/bench_mobile.py [--speed 50] [--seconds 40]
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import bench_clone  # noqa: E402
from tests.support.live import app_with, serve  # noqa: E402
from tests.support.mobile import load_catalogue, mobile_settings  # noqa: E402
from tests.support.places import grid_of_township, point_in  # noqa: E402

WEB = ROOT / "web_map"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


class ByteCounter:
    """ASGI middleware: count the response bytes of every request, by path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.log: list[tuple[str, str, int, int]] = []
        #: Request body bytes, in step with ``log``.
        self.received: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve one request, adding up the body bytes sent."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = {"bytes": 0, "status": 0, "in": 0}

        async def counting_in() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                sent["in"] += len(message.get("body", b""))
            return message

        async def counting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        await self.app(scope, counting_in, counting)
        self.log.append((scope["method"], scope["path"], sent["status"], sent["bytes"]))
        self.received.append(sent["in"])

    def mark(self) -> int:
        """Return a position in the log."""
        return len(self.log)

    def since(self, mark: int) -> list[tuple[str, str, int, int]]:
        """Return the requests logged after a mark."""
        return self.log[mark:]


@contextmanager
def bench_server(data_dir: Path) -> Iterator[tuple[str, ByteCounter, Any]]:
    """Yield (base URL, byte counter, app engine) on a fresh clone of the tiny demo."""
    from sqlalchemy import create_engine

    from geoserver.database.bootstrap import APP_ROLE
    from geoserver.database.engine import sqlalchemy_url

    with bench_clone("mobile") as (pg, name):
        engine = create_engine(sqlalchemy_url(pg.url(APP_ROLE, name)))
        try:
            counter = ByteCounter(app_with(mobile_settings(pg, name, data_dir)))
            with serve(counter) as base:  # type: ignore[arg-type]  (any ASGI app serves)
                yield base, counter, engine
        finally:
            engine.dispose()


# --- the model: figures from the client's own settings ------------------------------------------


def client_defaults() -> dict[str, float]:
    """Read DEFAULTS from web_map/m/js/config.js (numbers only)."""
    src = (WEB / "m" / "js" / "config.js").read_text()
    block = src[src.index("DEFAULTS = Object.freeze({"):src.index("});")]
    return {k: float(v) for k, v in re.findall(r"^\s*(\w+):\s*([0-9.]+),", block, re.M)}


def model(d: dict[str, float], hours: float = 1.0) -> dict[str, float]:
    """Uploads, requests and timer wake-ups in `hours` of patrol at the given timers."""
    sample = d["sampleSeconds"]
    # The outbox is checked on sample ticks: a batch goes on the first tick at which the
    # oldest waiting sample is uploadSeconds old.
    period = math.ceil(d["uploadSeconds"] / sample) * sample
    uploads = hours * 3600 / period + 2  # + the start and stop markers, each sent at once
    # Tasks are refreshed right after an upload once taskPollSeconds have passed.
    polls = hours * 3600 / (math.ceil(d["taskPollSeconds"] / period) * period)
    ticks = hours * 3600 / sample
    watermark = hours * 3600 / 60  # shared watermark.js repaints once a minute
    return {"samples": ticks, "batch_points": period / sample, "uploads": uploads,
            "task_polls": polls, "requests": uploads + polls, "timer_wakeups": ticks + watermark,
            "radio_wakeups": uploads}


# --- measuring ---------------------------------------------------------------------------------


def static_bytes(log: list[tuple[str, str, int, int]]) -> tuple[int, int, int]:
    """Return (static bytes, API bytes, request count) of a log slice."""
    static = sum(b for _m, p, _s, b in log if not p.startswith(("/api/", "/tiles/")))
    api = sum(b for _m, p, _s, b in log if p.startswith(("/api/", "/tiles/")))
    return static, api, len(log)


def shell_gzip() -> tuple[int, int]:
    """Return (raw, gzip -6) bytes of the phone page's shell files."""
    files = [p for p in (WEB / "m").rglob("*") if p.is_file()]
    files += [WEB / "js" / "api.js", WEB / "js" / "watermark.js"]
    raw = sum(p.stat().st_size for p in files)
    return raw, sum(len(gzip.compress(p.read_bytes(), 6)) for p in files)


def maplibre_gzip() -> tuple[int, int]:
    """Return (raw, gzip -6) bytes of MapLibre's JS and CSS."""
    files = list((WEB / "vendor" / "maplibre-gl-5.24.1").glob("maplibre-gl.*"))
    return (sum(p.stat().st_size for p in files),
            sum(len(gzip.compress(p.read_bytes(), 6)) for p in files))


WAKE_COUNTER = """(() => {
    const w = window.__wake = {timers: {}, raf: 0};
    const wrap = (orig) => (fn, ms, ...rest) => orig((...a) => {
        const k = String(Math.round(ms || 0));
        w.timers[k] = (w.timers[k] || 0) + 1;
        return typeof fn === 'function' ? fn(...a) : undefined;
    }, ms, ...rest);
    window.setInterval = wrap(window.setInterval.bind(window));
    window.setTimeout = wrap(window.setTimeout.bind(window));
    const raf = window.requestAnimationFrame.bind(window);
    window.requestAnimationFrame = (fn) => raf((t) => { w.raf += 1; return fn(t); });
})()"""


def kb(n: float) -> str:
    """Format bytes as kB."""
    return f"{n / 1024:,.1f} kB"


def run(speed: float, seconds: float) -> None:
    """Measure and print."""
    from playwright.sync_api import sync_playwright

    from tests.support.users import make_user

    defaults = client_defaults()
    with tempfile.TemporaryDirectory() as tmp, bench_server(Path(tmp)) as (base, counter,
                                                                          engine), \
            sync_playwright() as p:
        load_catalogue(engine)
        grid = grid_of_township(engine)
        lon, lat = point_in(engine, grid)
        user = make_user(engine, f"bench_m_{os.getpid()}", roles=["grid_worker"], scope=[grid],
                         positions=[("grid_worker", grid)])
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True, locale="zh-CN", timezone_id="Asia/Shanghai",
                                  geolocation={"longitude": lon, "latitude": lat, "accuracy": 8},
                                  permissions=["geolocation"])
        ctx.add_init_script(WAKE_COUNTER)
        page = ctx.new_page()

        # 1. page weight
        m0 = counter.mark()
        page.goto(f"{base}/m/")
        page.wait_for_selector("#login-form")
        page.wait_for_function("() => navigator.serviceWorker.controller !== null")
        page.wait_for_load_state("networkidle")
        first = static_bytes(counter.since(m0))
        m1 = counter.mark()
        page.fill("#username", user.username)
        page.fill("#password", user.password)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#view-tasks:not([hidden])")
        page.wait_for_load_state("networkidle")
        login = static_bytes(counter.since(m1))
        m2 = counter.mark()
        page.click("#tabs a[data-view=patrol]")
        page.wait_for_selector("#patrol-map canvas")
        page.wait_for_load_state("networkidle")
        first_map = static_bytes(counter.since(m2))
        m3 = counter.mark()
        page.reload()
        page.wait_for_selector("#patrol-map canvas")
        page.wait_for_load_state("networkidle")
        cached = counter.since(m3)
        reload = static_bytes(cached)

        raw, gz = shell_gzip()
        ml_raw, ml_gz = maplibre_gzip()
        print("== page weight (bytes served, counted at the server) ==")
        print(f"first visit to the login form  : {kb(first[0])} static + {kb(first[1])} API "
              f"in {first[2]} requests (includes the service worker's precache)")
        print(f"  shell files on disk          : {kb(raw)}; gzip -6 would send {kb(gz)} "
              f"({gz / raw:.0%})")
        print(f"login and my tasks             : {kb(login[0])} static + {kb(login[1])} API "
              f"in {login[2]} requests")
        print(f"first map (MapLibre, lazily)   : {kb(first_map[0])} static + "
              f"{kb(first_map[1])} API/tiles in {first_map[2]} requests "
              f"(MapLibre {kb(ml_raw)}, gzip {kb(ml_gz)})")
        print(f"reload, service worker in place: {kb(reload[0])} static + {kb(reload[1])} "
              f"API/tiles in {reload[2]} requests")
        static_hits = Counter(path for _m, path, _s, b in cached
                              if not path.startswith(("/api/", "/tiles/")))
        print(f"  static requests on reload    : {dict(static_hits) or 'none'}")

        # 2. uploads and wake-ups
        m = model(defaults)
        print()
        print("== one hour of patrol at the default timers (model from config.js) ==")
        print(f"sampleSeconds={defaults['sampleSeconds']:g} uploadSeconds="
              f"{defaults['uploadSeconds']:g} taskPollSeconds={defaults['taskPollSeconds']:g}")
        print(f"samples {m['samples']:.0f}/h, {m['batch_points']:.0f} points per batch; "
              f"uploads {m['uploads']:.0f}/h; task refreshes {m['task_polls']:.0f}/h (same radio "
              f"wake-up as an upload); requests {m['requests']:.0f}/h")
        print(f"timer wake-ups {m['timer_wakeups']:.0f}/h (sample ticks + 60 watermark repaints)"
              f"; radio wake-ups {m['radio_wakeups']:.0f}/h")

        fast = {k: defaults[k] / speed for k in ("sampleSeconds", "uploadSeconds",
                                                 "taskPollSeconds")}
        page.goto(f"{base}/m/?interval={fast['sampleSeconds']:g}&upload="
                  f"{fast['uploadSeconds']:g}&poll={fast['taskPollSeconds']:g}#patrol")
        page.wait_for_selector("#patrol-map canvas")
        page.evaluate("() => { window.__wake.timers = {}; window.__wake.raf = 0; }")
        m4 = counter.mark()
        t0 = time.monotonic()
        page.click("#patrol-toggle")
        step = 0
        while time.monotonic() - t0 < seconds:
            step += 1
            ctx.set_geolocation({"longitude": lon + step * 2e-6, "latitude": lat,
                                 "accuracy": 8})
            time.sleep(fast["sampleSeconds"])
        page.click("#patrol-toggle")
        page.wait_for_function("() => !window.gridgovM.patrol.state.active")
        time.sleep(1.0)
        state = page.evaluate("() => window.gridgovM.patrol.state")
        elapsed = (state["endedAt"] - state["startedAt"]) / 1000
        log = counter.since(m4)
        wake = page.evaluate("() => window.__wake")
        ticks = page.evaluate("() => window.gridgovM.patrol.ticks")
        simulated_h = elapsed * speed / 3600
        uploads = sum(1 for meth, path, _s, _b in log if path == "/api/v1/patrols/points")
        polls = sum(1 for meth, path, _s, _b in log if path == "/api/v1/mobile/tasks")
        up_bytes = sum(b for meth, path, _s, b in log if path == "/api/v1/patrols/points")
        sent_bytes = sum(n for (meth, path, _s, _b), n in zip(log, counter.received[m4:],
                                                              strict=True)
                         if path == "/api/v1/patrols/points")
        sample_key = str(round(fast["sampleSeconds"] * 1000))
        other = {k: v for k, v in wake["timers"].items() if k != sample_key}
        print()
        print(f"== confirmed at {speed:g}x: a patrol of {elapsed:.1f} s real = "
              f"{simulated_h * 60:.1f} simulated minutes ==")
        print(f"sample ticks {ticks} -> {ticks / simulated_h:.0f}/h (model "
              f"{m['samples']:.0f}/h)")
        print(f"uploads {uploads} -> {uploads / simulated_h:.0f}/h (model {m['uploads']:.0f}/h,"
              f" of which 2 markers per patrol); task refreshes {polls} -> "
              f"{polls / simulated_h:.0f}/h (model {m['task_polls']:.0f}/h)")
        print(f"page timer firings: {wake['timers'].get(sample_key, 0)} at the sample interval, "
              f"others by delay (ms → firings, not scaled: they do not follow the clock "
              f"setting) {other}; animation frames {wake['raf']} (the map redraws per sample)")
        print(f"bytes sent per upload {sent_bytes / max(1, uploads):.0f} B (JSON, "
              f"{m['batch_points']:.0f} samples), answers {up_bytes / max(1, uploads):.0f} B; "
              f"~{(sent_bytes + up_bytes) / simulated_h / 1024:.0f} kB/h of patrol")
        browser.close()


def main() -> None:
    """Parse arguments and run."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speed", type=float, default=50.0, help="clock speed-up of the run")
    ap.add_argument("--seconds", type=float, default=40.0, help="real seconds of patrol")
    a = ap.parse_args()
    run(a.speed, a.seconds)


if __name__ == "__main__":
    main()

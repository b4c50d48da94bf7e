"""Page helpers shared by the browser tests: log in, wait for an idle map, read what it drew."""

from __future__ import annotations

from typing import Any

DEMO_PASSWORD = "Demo-Wenzhou-2026"


def login(page: Any, base: str, username: str, path: str = "/") -> None:
    """Log in through the form and wait for the map to be loaded and idle."""
    page.goto(base + path)
    page.fill("#username", username)
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_function("() => window.gridgov.map && window.gridgov.map.loaded()",
                           timeout=60_000)
    idle(page)


def idle(page: Any) -> None:
    """Wait until the map has drawn everything it asked for."""
    page.evaluate("""() => new Promise((resolve) => {
        const m = window.gridgov.map;
        if (m.loaded() && m.areTilesLoaded()) { setTimeout(resolve, 300); return; }
        m.once('idle', () => resolve());
    })""")


def rendered(page: Any, layers: list[str], prop: str) -> set:
    """Return the distinct values of ``prop`` over the features drawn on ``layers``."""
    return set(page.evaluate("""([layers, prop]) => window.gridgov.map
        .queryRenderedFeatures({layers: layers.filter(l => window.gridgov.map.getLayer(l))})
        .map(f => f.properties[prop])""", [layers, prop]))


def wait_rendered(page: Any, layers: list[str], prop: str, value: Any,
                  timeout: int = 20_000) -> None:
    """Wait until a feature with ``prop == value`` is drawn on one of ``layers``."""
    page.wait_for_function("""([layers, prop, value]) => window.gridgov.map
        .queryRenderedFeatures({layers: layers.filter(l => window.gridgov.map.getLayer(l))})
        .some(f => f.properties[prop] === value)""", arg=[layers, prop, value], timeout=timeout)

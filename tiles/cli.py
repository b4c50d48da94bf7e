"""``gridgov tiles …``: pre-render public layers into the disk cache, fill H3 cell outlines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from geoserver.config import Settings
from geoserver.database import migrate
from geoserver.database.engine import SYSTEM_SCOPE, make_engine, scoped_session
from geoserver.database.runtime import DatabaseTarget, open_database
from geoserver.errors import GridgovError
from tiles.registry import REGISTRY, TileLayer
from tiles.settings import TileSettings, disk_dir_for

app = typer.Typer(help="Vector tiles: pre-render base layers, H3 cell outlines.",
                  no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


@contextmanager
def _database(settings: Settings) -> Iterator[DatabaseTarget]:
    try:
        target = open_database(settings.database)
    except GridgovError as e:
        _fail(e.detail)
        raise
    try:
        status = migrate.schema_status(target.owner_url)
        if not status.current:
            _fail(status.explain())
        yield target
    finally:
        target.close()


def _layers(names: list[str] | None) -> list[TileLayer]:
    if not names:
        return [layer for layer in REGISTRY if layer.public]
    chosen: list[TileLayer] = []
    for name in names:
        layer = REGISTRY.get(name)
        if layer is None or not layer.public:
            public = ", ".join(x.name for x in REGISTRY if x.public)
            _fail(f"{name!r} is not a public tile layer (public: {public})")
            raise AssertionError("unreachable")
        chosen.append(layer)
    return chosen


def _scope_paths(app_url: str, codes: list[str] | None) -> tuple[str, ...]:
    if not codes:
        return SYSTEM_SCOPE
    from sqlalchemy import text

    engine = make_engine(app_url, pool_size=1)
    try:
        with scoped_session(engine, SYSTEM_SCOPE) as s:
            paths: list[str] = []
            for code in codes:
                path = s.execute(text("SELECT path::text FROM region WHERE code = :c "
                                      "AND valid_to IS NULL"), {"c": code}).scalar()
                if path is None:
                    _fail(f"no current region with code {code}")
                paths.append(str(path))
    finally:
        engine.dispose()
    return tuple(paths)


def _parse_bbox(raw: str) -> tuple[float, float, float, float]:
    try:
        west, south, east, north = (float(v) for v in raw.split(","))
    except ValueError:
        _fail("--bbox is west,south,east,north in degrees")
        raise
    if not (-180 <= west < east <= 180 and -85.06 <= south < north <= 85.06):
        _fail("--bbox must be west < east and south < north, in lon/lat degrees")
    return west, south, east, north


@app.command("seed")
def seed(
    layer: Annotated[list[str] | None, typer.Option(
        help="Public layer to render (repeatable); default: every public layer.")] = None,
    min_zoom: Annotated[int, typer.Option(min=0, max=22)] = 10,
    max_zoom: Annotated[int, typer.Option(min=0, max=22)] = 14,
    bbox: Annotated[str | None, typer.Option(
        help="west,south,east,north (degrees); default: the extent of the regions.")] = None,
    scope: Annotated[list[str] | None, typer.Option(
        help="Render as seen by users with this region code as scope (repeatable, as one "
             "scope); default: the whole tree.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64)] = 4,
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Disk cache directory (default: GRIDGOV_TILES_DISK_DIR, or the data "
                      "directory's tile-cache with the embedded cluster).")] = None,
) -> None:
    """Pre-render public layers for a zoom range into the disk cache the servers read."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from tiles.service import TileService

    if min_zoom > max_zoom:
        _fail("--min-zoom is above --max-zoom")
    settings = Settings()
    tile_settings = TileSettings()
    disk = directory or disk_dir_for(tile_settings, settings.database)
    if disk is None:
        _fail("no disk cache: pass --dir or set GRIDGOV_TILES_DISK_DIR (the servers must use "
              "the same directory)")
    layers = _layers(layer)
    with _database(settings) as target:
        paths = _scope_paths(target.app_url, scope)
        service = TileService(target.app_url, tile_settings, disk_dir=disk)
        service.start()
        try:
            box = _parse_bbox(bbox) if bbox else service.bounds(paths)
            if box is None:
                _fail("no regions in the database: give --bbox")
            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bars:
                task = bars.add_task("rendering", total=None)
                result = service.seed(
                    layers, range(min_zoom, max_zoom + 1), box,  # type: ignore[arg-type]
                    scope=paths, workers=workers,
                    progress=lambda done, total: bars.update(task, completed=done, total=total))
        finally:
            service.stop()
    print(f"rendered {result.rendered:,} tiles ({result.empty:,} empty, "
          f"{result.bytes / 1e6:.1f} MB gzip), {result.skipped:,} already current, "
          f"into {disk}")


@app.command("h3-cells")
def h3_cells() -> None:
    """Write the H3 hexagon outlines the heat layers need (the job runner also does this)."""
    from tiles.h3grid import fill_cells

    settings = Settings()
    with _database(settings) as target:
        engine = make_engine(target.app_url, pool_size=1)
        try:
            with scoped_session(engine, SYSTEM_SCOPE) as s:
                written = fill_cells(s)
        finally:
            engine.dispose()
    print(f"wrote {written:,} H3 cell outlines")

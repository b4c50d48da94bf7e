"""``gridgov etl …``: the analysts' spatial ETL (import, claim, h3, export, report).

Every command connects as the app role and acts as the operator (system scope, audited as
``etl:<os user>``) or, with ``--as-user``, as a gridgov user in their jurisdiction; it shows a
progress bar, prints a summary table and exits non-zero when it did not do what was asked.
Mounted by ``api/cli.py`` as ``app.add_typer(etl_app, name="etl")``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from geoserver.errors import GridgovError
from spatial_etl.problems import EtlInputError
from spatial_etl.targets import NAMES

etl_app = typer.Typer(help="Spatial ETL for analysts: import, claim, h3, export, report.",
                      no_args_is_help=True, pretty_exceptions_show_locals=False)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

AsUser = Annotated[str | None, typer.Option(
    "--as-user", help="Act as this gridgov user (their permissions and jurisdiction); "
    "default: the operator, with system scope.")]
Workers = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Run on a local Dask cluster of N worker processes.")]
Scheduler = Annotated[str | None, typer.Option(
    "--scheduler", help="Run on this dask.distributed scheduler (tcp://host:8786).")]


@etl_app.callback()
def etl() -> None:
    """Spatial ETL for analysts: import, claim, h3, export, report."""


def fail(message: str) -> None:
    """Print one clear line and exit non-zero."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """Turn bad input and refused operations into one line and exit status 1."""
    try:
        yield
    except EtlInputError as exc:
        fail(exc.message)
    except GridgovError as exc:
        fail(exc.detail)


@contextmanager
def progress_bar(label: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """Yield (advance, set_total) callbacks driving a rich progress bar."""
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TaskProgressColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=None)
        yield (lambda n: bar.advance(task, n)), (lambda t: bar.update(task, total=t))


def summary(title: str, rows: list[tuple[str, Any]]) -> None:
    """Print a two-column summary table on standard output."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in rows:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    out.print(table)


@contextmanager
def dask_client(workers: int | None, scheduler: str | None) -> Iterator[Any]:
    """Yield a dask.distributed client (a LocalCluster of N workers, or a scheduler), or None."""
    if workers is None and scheduler is None:
        yield None
        return
    from spatial_etl.distributed import client_for

    with client_for(workers=workers, scheduler=scheduler) as client:
        console.print(f"dask: {client}")
        yield client


# --- import --------------------------------------------------------------------------------------


@etl_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="Shapefile, GeoPackage, GeoJSON, KML, CSV, xlsx "
                                              "(or a folder of GPX for tracks).")],
    target: Annotated[str, typer.Option(help=f"What the rows are: {', '.join(NAMES)}.")],
    crs: Annotated[str | None, typer.Option(
        help="Input CRS: EPSG:4326, EPSG:4490, EPSG:4549 (any EPSG code), GCJ-02 or BD-09; "
        "required when the file does not say (.prj).")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer (GeoPackage, KML) or sheet.")] = None,
    mapping: Annotated[Path | None, typer.Option(
        help="Column mapping file (JSON or YAML): columns, values, constants, unmapped.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything, write nothing.")
                       ] = False,
    keep_going: Annotated[bool, typer.Option(
        "--keep-going", help="Write the good rows; list the others in a rejects file.")] = False,
    report: Annotated[Path | None, typer.Option(
        help="CSV of repairs and rejected rows (default: <file>.report.csv, if any).")] = None,
    rejects: Annotated[Path | None, typer.Option(
        help="With --keep-going: CSV of the rows left out (default <file>.rejects.csv).")] = None,
    chunk: Annotated[int, typer.Option(min=1, help="Rows read at a time.")] = 10_000,
    scope: Annotated[str | None, typer.Option(
        help="Only write inside this region (a code in your jurisdiction).")] = None,
    as_user: AsUser = None,
    worker: Annotated[str | None, typer.Option(
        help="tracks: whose GPS tracks (default: the file name up to its first _).")] = None,
    sliver_m2: Annotated[float | None, typer.Option(
        help="regions/grids: overlap tolerated between neighbours, m² (default 200).")] = None,
    sliver_share: Annotated[float | None, typer.Option(
        help="regions/grids: overlap tolerated as a share of the area (default 0.002).")] = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
) -> None:
    """Import a file into regions, grids, addresses, base data, events or tracks."""
    from spatial_etl.db import connect
    from spatial_etl.importer import ImportOptions, run_import

    options = ImportOptions(target=target, crs=crs, layer=layer, mapping=mapping,
                            dry_run=dry_run, keep_going=keep_going, report=report,
                            rejects=rejects, chunk=chunk, worker=worker, sliver_m2=sliver_m2,
                            sliver_share=sliver_share)
    with errors_as_messages(), connect(as_user=as_user, region=scope) as env, \
            dask_client(workers, scheduler) as client:
        with progress_bar(f"import {file.name}") as (advance, set_total):
            stage = None
            if client is not None:
                from spatial_etl.distributed import distributed_stage

                stage = distributed_stage(client, env, file, options, console.print, advance)
            try:
                result = run_import(env, file, options, progress=advance, total=set_total,
                                    stage=stage)
            finally:
                if stage is not None:
                    stage.cleanup()
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    for problem in result.problems:
        console.print(f"  {problem}", highlight=False)
    state = ("dry run: nothing written" if result.dry_run else
             "committed" if result.committed else "NOTHING WRITTEN (rows rejected; fix them "
             "or use --keep-going)")
    summary(f"etl import {file.name} → {result.target}", [
        ("rows read", result.read), ("inserted", result.inserted), ("updated", result.updated),
        ("unchanged", result.unchanged), ("repaired", result.repaired),
        ("rejected", result.rejected), ("seconds", f"{result.seconds:.1f}"),
        ("rows/s", f"{result.read / result.seconds:,.0f}" if result.seconds else "-"),
        ("outcome", state), *[("file written", str(p)) for p in result.files]])
    if not result.ok:
        raise typer.Exit(1)


# --- claim ---------------------------------------------------------------------------------------


@etl_app.command("claim")
def claim_command(
    region: Annotated[str | None, typer.Option(help="Only this region (a code in scope).")
                      ] = None,
    distance_m: Annotated[float, typer.Option(
        "--distance-m", help="Rows this close to a grid boundary go to the claim queue.")
                          ] = 20.0,
    as_user: AsUser = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
) -> None:
    """Assign unassigned rows to grids; boundary cases go to the claim queue (数据认领)."""
    from spatial_etl.claiming import run_claim
    from spatial_etl.db import connect

    with errors_as_messages(), connect(as_user=as_user, region=region) as env, \
            dask_client(workers, scheduler) as client:
        with progress_bar("claim") as (advance, set_total):
            set_total(1)
            result = run_claim(env, distance_m=distance_m, client=client)
            advance(1)
    rows: list[tuple[str, Any]] = []
    for kind, counts in result.enqueued.items():
        rows += [(f"{kind}: queued (boundary)", counts["boundary"]),
                 (f"{kind}: queued (outside grids)", counts["outside_grids"])]
        if counts["beyond_scope"]:
            rows.append((f"{kind}: beyond your scope", counts["beyond_scope"]))
    rows += [(f"auto-claim: {k}", result.auto[k]) for k in
             ("examined", "geocoded", "located", "claimed", "ambiguous", "unlocated")]
    rows += [("left in the claim queue", result.open_items),
             ("township partitions (dask)", result.partitions),
             ("seconds", f"{result.seconds:.1f}")]
    summary("etl claim", rows)


# --- h3 ------------------------------------------------------------------------------------------


def _resolutions(value: str | None) -> tuple[int, ...] | None:
    if not value:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        fail("--resolutions is a list like 7,8,9")
        raise  # unreachable


@etl_app.command("h3")
def h3_command(
    resolutions: Annotated[str | None, typer.Option(
        help="Resolutions to recompute, e.g. 7,8,9 (default: all the table stores).")] = None,
    kind: Annotated[list[str] | None, typer.Option(
        help="buildings, events, addresses, places, components, enterprises, organizations "
        "(repeatable; default all).")] = None,
    date_from: Annotated[str | None, typer.Option(
        "--from", help="Only rows of this period (reported_at for events, else created_at).")
                         ] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="End of the period (inclusive).")
                       ] = None,
    statistics: Annotated[bool, typer.Option(
        help="Also recount the statistics tables (operator only).")] = True,
    region: Annotated[str | None, typer.Option(help="Only rows in this region.")] = None,
    as_user: AsUser = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
) -> None:
    """Recompute H3 cell ids and the aggregates heat layers and statistics read."""
    from spatial_etl.db import connect
    from spatial_etl.h3 import run_h3

    period = None
    if date_from or date_to:
        try:
            start = date.fromisoformat(date_from) if date_from else date(1970, 1, 1)
            end = date.fromisoformat(date_to) if date_to else date(9999, 12, 30)
        except ValueError:
            fail("--from/--to are dates like 2026-03-01")
            raise
        period = (start, end)
    with errors_as_messages(), connect(as_user=as_user, region=region) as env, \
            dask_client(workers, scheduler) as client:
        with progress_bar("h3") as (advance, set_total):
            result = run_h3(env, kinds=kind or None, resolutions=_resolutions(resolutions),
                            period=period, statistics=statistics, client=client,
                            progress=advance, total=set_total)
    rows: list[tuple[str, Any]] = []
    for name, (seen, changed) in result.cells.items():
        rows += [(f"{name}: rows", seen), (f"{name}: cells changed", changed)]
    rows += [("hexagon outlines written", result.outlines),
             ("statistics recounted", ", ".join(result.statistics) or "no"),
             ("seconds", f"{result.seconds:.1f}")]
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    summary("etl h3", rows)


# --- export --------------------------------------------------------------------------------------


@etl_app.command("export")
def export_command(
    layer: Annotated[str, typer.Option(help="buildings, grids, villages, townships, counties, "
                                            "addresses, places, components, enterprises, events")],
    fmt: Annotated[str, typer.Option("--format", help="gpkg, shp, geojson, csv or xlsx.")],
    out: Annotated[Path, typer.Option(help="File to write.")],
    crs: Annotated[str, typer.Option(help="CGCS2000, WGS84 or GCJ-02.")] = "CGCS2000",
    cql_filter: Annotated[str | None, typer.Option(
        "--filter", help="CQL2 text filter on the layer's properties, e.g. floors > 10.")] = None,
    region: Annotated[str | None, typer.Option(help="Only this region (a code in scope).")
                      ] = None,
    as_user: AsUser = None,
) -> None:
    """Export a layer (scoped, watermarked, audited) to a file."""
    from spatial_etl.db import connect
    from spatial_etl.exporting import run_export

    with errors_as_messages(), connect(as_user=as_user, region=region) as env:
        with progress_bar(f"export {layer}") as (advance, _):
            result = run_export(env, layer=layer, fmt=fmt, crs=crs, out=out,
                                cql_filter=cql_filter, progress=advance)
    rows: list[tuple[str, Any]] = [("rows", result.rows), ("format", result.format),
                                   ("crs", result.crs), ("watermark", result.watermark),
                                   ("seconds", f"{result.seconds:.1f}")]
    if result.skipped_wkt:
        rows.append(("geometries too long for an Excel cell", result.skipped_wkt))
    rows += [("file", str(f)) for f in result.files]
    summary(f"etl export {layer}", rows)


# --- report --------------------------------------------------------------------------------------


@etl_app.command("report")
def report_command(
    region: Annotated[str, typer.Option(help="The region to report on (a code in scope).")],
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
    date_from: Annotated[str | None, typer.Option("--from", help="Events from this date.")
                         ] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Events up to this date.")] = None,
    as_user: AsUser = None,
) -> None:
    """Write an offline HTML map of a region: shaded sub-regions, heat, points, a table."""
    from spatial_etl.db import connect
    from spatial_etl.report_map import run_report

    try:
        start = date.fromisoformat(date_from) if date_from else None
        end = date.fromisoformat(date_to) if date_to else None
    except ValueError:
        fail("--from/--to are dates like 2026-03-01")
        raise
    with errors_as_messages(), connect(as_user=as_user, region=region) as env:
        with progress_bar(f"report {region}") as (advance, set_total):
            set_total(1)
            result = run_report(env, region=region, out=out, date_from=start, date_to=end,
                                progress=advance)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    summary(f"etl report {region}", [
        ("sub-regions", result.subregions), ("shaded by", result.measure),
        ("buildings (heat)", result.buildings), ("events (heat)", result.events),
        ("key places", result.places), ("events period", result.period),
        ("seconds", f"{result.seconds:.1f}"),
        ("file", str(result.path))])

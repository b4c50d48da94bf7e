"""Statistics (研判分析): distributions, trends, peer rankings, region tables, hot spots, exports.

Figures come from aggregate tables the job runner refreshes; every answer says how fresh
(``refreshed_at``). Dates are Asia/Shanghai days, ``date_from``..``date_to`` inclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import AuditContextDep, EngineDep, SessionDep, require, stream_rows
from api.exports import FORMATS, export_response
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from geoserver.services import statistics
from geoserver.services.audit import audit

router = APIRouter(prefix="/api/v1/statistics", tags=["statistics"])

Reader = Annotated[Principal, Depends(require("statistics.read"))]
Exporter = Annotated[Principal, Depends(require("export"))]
Subject = Annotated[str, Query(description=", ".join(statistics.SUBJECTS))]
Day = date | None

REPORTS = ("regions", "distribution", "trend", "ranking", "hotspots")
_COLUMNS = {
    "distribution": ("code", "name", "level", "category", "label", "n", "share", "residents",
                     "area_km2", "per_1000", "per_km2"),
    "trend": ("period", "n", "closed"),
    "ranking": ("rank", "code", "name", "level", "own", "total", "residents", "area_km2",
                "per_1000", "per_km2"),
    "hotspots": ("cell", "count", "previous", "change", "z", "p", "spot", "confidence",
                 "z_previous"),
    "regions": statistics.TABLE_COLUMNS,
}


@router.get("/distribution", summary="Distribution over child regions (with rates) or by type")
def distribution(user: Reader, session: SessionDep, subject: Subject,
                 region_code: str | None = None, by: str = "region",
                 category: str | None = None, event_type: str | None = None,
                 date_from: Day = None, date_to: Day = None) -> dict[str, Any]:
    """Return counts, shares, per-1,000-residents and per-km² rates, choropleth-ready."""
    return statistics.distribution(session, actor=user, subject=subject, region_code=region_code,
                                   by=by, category=category, event_type=event_type,
                                   date_from=date_from, date_to=date_to)


@router.get("/trend", summary="Counts per day, week or month (Asia/Shanghai)")
def trend(user: Reader, session: SessionDep, subject: Subject, region_code: str | None = None,
          unit: str = "day", category: str | None = None, event_type: str | None = None,
          date_from: Day = None, date_to: Day = None) -> dict[str, Any]:
    """Return a zero-filled series (events: reported and closed; base data: registered)."""
    return statistics.trend(session, actor=user, subject=subject, region_code=region_code,
                            unit=unit, category=category, event_type=event_type,
                            date_from=date_from, date_to=date_to)


@router.get("/ranking", summary="通报排名: your region among its peers (totals only)")
def ranking(user: Reader, session: SessionDep, subject: Subject,
            region_code: str | None = None, measure: str | None = None,
            category: str | None = None, event_type: str | None = None,
            date_from: Day = None, date_to: Day = None) -> dict[str, Any]:
    """Rank a region of yours among its siblings; peers show totals, never rows."""
    return statistics.ranking(session, actor=user, subject=subject, region_code=region_code,
                              measure=measure, category=category, event_type=event_type,
                              date_from=date_from, date_to=date_to)


@router.get("/regions", summary="Indicators for every region of a level under a region")
def regions(user: Reader, session: SessionDep, region_code: str | None = None,
            level: str | None = None, date_from: Day = None,
            date_to: Day = None) -> dict[str, Any]:
    """Return one row per region: counts per subject, events, rates."""
    rows = list(statistics.region_table(session, actor=user, region_code=region_code,
                                        level=level, date_from=date_from, date_to=date_to))
    return {"rows": rows, "refreshed_at": statistics.refreshed_at(session, "person"),
            "events_refreshed_at": statistics.refreshed_at(session, "event")}


@router.get("/hotspots", summary="Getis-Ord Gi* hot spots of events on H3 cells")
def hotspots(user: Reader, session: SessionDep, region_code: str | None = None,
             date_from: Day = None, date_to: Day = None, event_type: str | None = None,
             resolution: Annotated[int, Query(ge=7, le=9)] = 8,
             limit: Annotated[int, Query(ge=1, le=2000)] = 200,
             source: str = "event") -> dict[str, Any]:
    """Return cells with z-scores (hot/cold at 90/95/99 %) and the cells that changed most.

    Event counts come from the refreshed cell aggregate (as of ``refreshed_at``).
    """
    return statistics.hotspots(session, actor=user, region_code=region_code,
                               date_from=date_from, date_to=date_to, event_type=event_type,
                               resolution=resolution, limit=limit, source=source)


@router.get("/export", summary="Export a statistics report as csv, xlsx or GeoJSON")
def export(user: Exporter, session: SessionDep, engine: EngineDep, context: AuditContextDep,
           report: str, format: str = "csv", subject: str = "event",
           region_code: str | None = None, by: str = "region", unit: str = "day",
           level: str | None = None, measure: str | None = None, category: str | None = None,
           event_type: str | None = None, resolution: int = 8, date_from: Day = None,
           date_to: Day = None) -> Any:
    """Stream a report with the watermark; the export is audited."""
    if format not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}", field="format")
    if report not in REPORTS:
        raise InvalidInput(f"report must be one of {', '.join(REPORTS)}", field="report")
    if not user.can("statistics.read"):
        raise InvalidInput("exporting statistics needs statistics.read", field="report")
    args = {"region_code": region_code, "date_from": date_from, "date_to": date_to}
    rows = _report_rows(session, engine, user, report, args, subject=subject, by=by, unit=unit,
                        level=level, measure=measure, category=category,
                        event_type=event_type, resolution=resolution)
    audit(session, actor=user, action="export", object_kind="statistics", context=context,
          detail={"report": report, "format": format, **{k: str(v) for k, v in args.items()}})
    return export_response(format, rows, _COLUMNS[report], user, f"statistics-{report}")


def _report_rows(session: Any, engine: Any, user: Principal, report: str,
                 args: dict[str, Any], **kw: Any) -> Iterable[dict[str, Any]]:
    """Return a report's rows (checked now; the region table streams afterwards)."""
    if report == "regions":
        statistics.region_table(session, actor=user, level=kw["level"], **args)  # checks
        produce: Callable[[Any], Any] = lambda s: statistics.region_table(  # noqa: E731
            s, actor=user, level=kw["level"], **args)
        return stream_rows(engine, user, produce)
    if report == "hotspots":
        fc = statistics.hotspots(session, actor=user, event_type=kw["event_type"],
                                 resolution=kw["resolution"], **args)
        return [{**f["properties"], "geometry": f["geometry"]} for f in fc["features"]]
    common = {"actor": user, "subject": kw["subject"], "category": kw["category"],
              "event_type": kw["event_type"], **args}
    if report == "distribution":
        return statistics.distribution(session, by=kw["by"], **common)["rows"]
    if report == "trend":
        return statistics.trend(session, unit=kw["unit"], **common)["rows"]
    return statistics.ranking(session, measure=kw["measure"], **common)["rows"]

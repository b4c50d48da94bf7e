"""``etl import FOLDER --target tracks``: a folder of GPX tracks through the patrol ingest.

Each file is stored once (its batch id is its content hash, so a re-run skips it) as the points
of one worker: ``--worker USERNAME``, or else the file name up to its first ``_``
(``w330302006044001_20261103.gpx``). Patrol sessions (巡查记录) are then built from the points
by the patrol job, as for points sent from phones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from geoserver.errors import GridgovError
from geoserver.services import patrols
from geoserver.services.audit import audit
from geoserver.services.dberrors import translate
from spatial_etl.crs import parse_crs_option
from spatial_etl.db import EtlEnv, resolve_user
from spatial_etl.problems import EtlInputError, ProblemLog

if TYPE_CHECKING:
    from spatial_etl.importer import ImportOptions, ImportResult


def gpx_files(path: Path) -> list[Path]:
    """Return the GPX files of a folder (sorted), or the file itself."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gpx")
    if not files:
        raise EtlInputError(f"{path} holds no .gpx files")
    return files


def _input_crs(option: str | None) -> str:
    """Return the patrol ingest's name for the tracks' CRS (GPX is WGS84 unless told)."""
    if option is None:
        return "WGS84"
    crs = parse_crs_option(option)
    if crs.offset is not None:
        return crs.offset.value
    if crs.is_lonlat:
        return "WGS84"
    raise EtlInputError(f"GPX tracks are lon/lat: --crs {option} cannot apply to them")


def import_tracks(env: EtlEnv, path: Path, options: ImportOptions, log: ProblemLog,
                  result: ImportResult, *, progress: Callable[[int], None] | None = None,
                  total: Callable[[int], None] | None = None) -> None:
    """Store every GPX file of a folder as a worker's track, in one transaction."""
    files = gpx_files(path)
    crs = _input_crs(options.crs)
    if total is not None:
        total(len(files))
    with env.session() as session:
        users: dict[str, int] = {}
        for file in files:
            name = options.worker or file.stem.split("_", 1)[0]
            result.read += 1
            try:
                with session.begin_nested():
                    if name not in users:
                        users[name] = int(resolve_user(session, name).user_id or 0)
                    stored = patrols.ingest_file(session, actor=env.actor, data=file.read_bytes(),
                                                 kind="gpx", crs=crs, user_id=users[name])
            except (GridgovError, EtlInputError, DBAPIError) as exc:
                reason = (exc.message if isinstance(exc, EtlInputError) else
                          translate(exc).detail if isinstance(exc, DBAPIError) else exc.detail)
                log.reject(file.name, None, "file", f"{name}: {reason}",
                           values={"file": str(file), "worker": name})
                continue
            finally:
                if progress is not None:
                    progress(1)
            if stored.duplicate:
                result.unchanged += 1
            else:
                result.inserted += 1
                log.note(file.name, None, "file", f"{stored.points} points of {name}")
        audit(session, actor=env.actor, action="etl.import", object_kind="tracks",
              object_id=path.name[:200], detail={"files": len(files), "stored": result.inserted,
                                                 "dry_run": options.dry_run})
        if options.dry_run or (log.rejected and not options.keep_going):
            session.rollback()
        else:
            session.commit()
            result.committed = True

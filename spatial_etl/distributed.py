"""Dask: import, claim and h3 on a dask.distributed cluster (``--workers N`` or
``--scheduler ADDRESS``), for inputs larger than one machine wants to hold or compute.

- import: ``dask_geopandas.read_file`` cuts a GIS file into partitions of ``--chunk`` rows;
  each worker checks its partition with the same code as the single process and commits its
  good rows into ``etl_stage`` (its own connection; the stage's policy keeps loads apart). The
  driver then merges the whole load in one transaction, as a single process does, and deletes
  the staged rows whatever happens. Only the set-based targets (buildings, components) from
  GIS files run distributed; the others are per-row writes that one transaction serialises.
- claim: one task per township of the scope, each running the claim service with the actor
  limited to that township (one transaction each); a last pass on the driver over the whole
  scope takes what lies between townships.
- h3: one task per id range of the table, each running ``h3agg.recompute_cells``.

Workers need the gridgov packages importable and the app role's URL; they connect as the app
role with the actor's scope, exactly as the single process does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from geoserver.database.engine import make_engine, set_scope
from geoserver.domain.principal import Principal
from spatial_etl import bulk
from spatial_etl.db import STATEMENT_TIMEOUT, EtlEnv
from spatial_etl.importer import ImportOptions, open_input, stage_chunk
from spatial_etl.mapping import Resolved
from spatial_etl.prepare import ProblemList
from spatial_etl.problems import ProblemLog
from spatial_etl.sources import Chunk, SourceInfo
from spatial_etl.targets import target


@contextmanager
def client_for(*, workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """Yield a dask.distributed Client: a LocalCluster of N processes, or a scheduler's."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        from spatial_etl.problems import EtlInputError

        raise EtlInputError("--workers/--scheduler need the optional dependencies: "
                            "pip install 'gridgov[etl-dask]'") from None
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@cache
def _engine(url: str) -> Engine:
    """Return this worker process's engine for a database (one small pool per process)."""
    return make_engine(url, pool_size=1, statement_timeout_ms=60 * 60 * 1000)


@contextmanager
def worker_session(url: str, scope: tuple[str, ...]) -> Iterator[Session]:
    """Yield a worker's session in one transaction with the actor's scope; commit on success."""
    with Session(_engine(url)) as session, session.begin():
        set_scope(session, scope)
        session.execute(text(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"))
        yield session


# --- import --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageJob:
    """What a worker needs to check and stage one partition (picklable)."""

    url: str
    scope: tuple[str, ...]
    load_id: str
    source: SourceInfo
    target: str
    resolved: Resolved


def stage_partition(frame: Any, job: StageJob) -> tuple[int, ProblemList]:
    """Check one partition (a GeoDataFrame slice of the file) and commit its good rows."""
    problems = ProblemList()
    if len(frame) == 0:
        return 0, problems
    # read_file gives partitions a global RangeIndex: row numbers match the single process.
    geometry = np.asarray(frame.geometry.array, dtype=object) if "geometry" in frame else None
    attrs = pd.DataFrame(frame.drop(columns="geometry", errors="ignore")).reset_index(drop=True)
    chunk = Chunk(int(frame.index[0]) + 1, attrs, geometry)
    with worker_session(job.url, job.scope) as session:
        bulk.open_load(session, job.load_id)
        stage_chunk(session, job.load_id, chunk, job.source, target(job.target), job.resolved,
                    problems, set())
    return len(frame), problems


class DistributedStage:
    """Stages a load on the cluster (the ``stage`` hook of run_import); cleans up after."""

    def __init__(self, client: Any, env: EtlEnv, path: Path, source: SourceInfo,
                 resolved: Resolved, options: ImportOptions,
                 progress: Callable[[int], None] | None = None) -> None:
        self.client, self.env, self.path = client, env, path
        self.source, self.resolved, self.options = source, resolved, options
        self.progress = progress
        self.load_id: str | None = None

    def __call__(self, load_id: str, log: ProblemLog) -> int:
        """Stage every partition; replay the workers' problems into the log; return rows read."""
        import dask
        import dask_geopandas
        from dask.distributed import as_completed

        self.load_id = load_id
        kwargs: dict[str, Any] = {"layer": self.source.layer}
        if self.source.encoding is not None:
            kwargs["encoding"] = self.source.encoding.gdal
        rows = self.source.rows or 0
        frames = dask_geopandas.read_file(
            self.path, npartitions=max(1, math.ceil(rows / self.options.chunk)), **kwargs)
        job = StageJob(self.env.app_url, self.env.actor.scope, load_id, self.source,
                       self.options.target, self.resolved)
        tasks = [dask.delayed(stage_partition)(part, job) for part in frames.to_delayed()]
        read = 0
        results: dict[int, ProblemList] = {}
        futures = self.client.compute(tasks)
        order = {f.key: i for i, f in enumerate(futures)}
        for future, (n, problems) in as_completed(futures, with_results=True):
            read += n
            results[order[future.key]] = problems
            if self.progress is not None:
                self.progress(n)
        for i in sorted(results):  # file order, whatever order the workers finished in
            results[i].replay(log)
        return read

    def cleanup(self) -> None:
        """Delete the load's committed staged rows (after a rollback, a dry run or an error)."""
        if self.load_id is None:
            return
        with self.env.session() as session:
            bulk.open_load(session, self.load_id)
            bulk.discard(session, self.load_id)
            session.commit()


def distributed_stage(client: Any, env: EtlEnv, path: Path, options: ImportOptions,
                      say: Callable[[str], None],
                      progress: Callable[[int], None] | None = None) -> DistributedStage | None:
    """Return the cluster staging hook, or None when this import runs in one process."""
    source, spec, resolved = open_input(path, options)
    if spec.bulk is None or not source.has_geometry:
        say(f"note: {spec.title} from {source.format} are imported in one process (only "
            "buildings and components from GIS files are distributed)")
        return None
    return DistributedStage(client, env, path, source, resolved, options, progress)


# --- claim ---------------------------------------------------------------------------------------


def claim_partition(url: str, actor: Principal, path: str, distance_m: float) -> dict[str, Any]:
    """Run the claim pass for one township (the actor limited to it); commit it."""
    from spatial_etl.claiming import claim_pass

    narrowed = dataclasses.replace(actor, scope=(path,))
    with worker_session(url, narrowed.scope) as session:
        return claim_pass(session, narrowed, distance_m=distance_m)


def townships(session: Session, actor: Principal) -> list[str]:
    """Return the paths of the townships in the actor's scope (claim partitions)."""
    return [str(p) for p in session.execute(text(
        "SELECT path::text FROM region WHERE valid_to IS NULL AND level = 'township' "
        "AND path <@ ANY (CAST(:s AS ltree[])) ORDER BY path"),
        {"s": list(actor.scope)}).scalars()]


def claim_on_cluster(client: Any, env: EtlEnv, paths: list[str],
                     distance_m: float) -> list[dict[str, Any]]:
    """Run the claim pass of every township on the cluster; return their reports."""
    futures = client.map(claim_partition, [env.app_url] * len(paths), [env.actor] * len(paths),
                         paths, [distance_m] * len(paths), pure=False)
    return list(client.gather(futures))


# --- h3 ------------------------------------------------------------------------------------------


def h3_partition(url: str, actor: Principal, kind: str, resolutions: tuple[int, ...],
                 id_range: tuple[int, int]) -> tuple[int, int]:
    """Recompute the cells of one id range; return (rows, changed)."""
    from geoserver.services.h3agg import recompute_cells

    with worker_session(url, actor.scope) as session:
        report = recompute_cells(session, actor=actor, kind=kind, resolutions=resolutions,
                                 id_range=id_range)
    return report.rows, report.changed


def h3_on_cluster(client: Any, env: EtlEnv, kind: str, resolutions: tuple[int, ...],
                  bounds: tuple[int, int], parts: int) -> tuple[int, int]:
    """Recompute a kind's cells in ``parts`` id ranges on the cluster; return totals."""
    lo, hi = bounds
    step = max(1, math.ceil((hi - lo + 1) / parts))
    ranges = [(a, min(a + step - 1, hi)) for a in range(lo, hi + 1, step)]
    futures = client.map(h3_partition, [env.app_url] * len(ranges), [env.actor] * len(ranges),
                         [kind] * len(ranges), [resolutions] * len(ranges), ranges, pure=False)
    done = client.gather(futures)
    return sum(r for r, _ in done), sum(c for _, c in done)

"""The ``gridgov`` command line: serve, database, demo data, users, ETL and tiles."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from geoserver.config import Settings
from geoserver.database import migrate as migrations
from geoserver.database.cluster import find_bindir
from geoserver.database.runtime import DatabaseTarget, check_server, open_database
from geoserver.errors import GridgovError
from spatial_etl.cli import etl_app
from tiles.cli import app as tiles_app

app = typer.Typer(help="gridgov: GIS-first grassroots governance server.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
db_app = typer.Typer(help="The database: embedded cluster, migrations, backups.",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tiles_app, name="tiles")
app.add_typer(etl_app, name="etl")
console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> None:
    """Print one clear line and exit non-zero."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def database(*, start: bool = True) -> Iterator[DatabaseTarget]:
    """Open the configured database for one command; stop a cluster this command started."""
    settings = Settings()
    try:
        target = open_database(settings.database, start=start)
    except GridgovError as e:
        fail(e.detail)
        raise  # unreachable; keeps type checkers calm
    try:
        yield target
    finally:
        target.close()


@contextmanager
def serve_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock so that one ``gridgov serve`` runs per data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "serve.lock"
    fh = path.open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        other = fh.read().strip() or "?"
        fail(f"another gridgov serve (pid {other}) is using data directory {data_dir.resolve()}")
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _check_port(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            fail(f"cannot listen on {host}:{port}: {e.strerror} (is another server running? "
                 "use --port)")


def prepare_schema(target: DatabaseTarget) -> None:
    """Migrate an empty database; refuse one whose schema differs from the code."""
    try:
        check_server(target.owner_url)
    except GridgovError as e:
        fail(e.detail)
    status = migrations.schema_status(target.owner_url)
    if status.empty:
        console.print("migrating the new database …")
        migrations.migrate(target.owner_url)
    elif not status.current:
        fail(status.explain())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes.")] = 1,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
) -> None:
    """Start the HTTP server (and the embedded database when no external one is configured)."""
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together")
    for f in (tls_cert, tls_key):
        if f is not None and not f.is_file():
            fail(f"no such file: {f}")
    _check_port(host, port)
    settings = Settings()
    # uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown; turn that into an
    # exception so the cluster below is stopped in order and the exit status is 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop_requested)
    try:
        _serve(settings, host, port, workers, tls_cert, tls_key)
    except _StopRequested:
        pass
    console.print("gridgov stopped")


class _StopRequested(Exception):
    """SIGINT or SIGTERM arrived."""


def _stop_requested(signum: int, frame: object) -> None:
    raise _StopRequested


def _serve(
    settings: Settings, host: str, port: int, workers: int, tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    import uvicorn

    with serve_lock(settings.database.data_dir), database() as target:
        prepare_schema(target)
        target.export_env()
        scheme = "https" if tls_cert else "http"
        console.print(f"gridgov serving on {scheme}://{host}:{port}  (Ctrl-C stops)")
        uvicorn.run(
            "api.app:app_from_env", factory=True, host=host, port=port, workers=workers,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            log_level=settings.server.log_level.lower(), timeout_graceful_shutdown=10,
            access_log=False,
        )


@db_app.command("up")
def db_up() -> None:
    """Start the embedded cluster and leave it running; print the owner URL."""
    settings = Settings()
    target = open_database(settings.database)
    target.started_here = False  # leave it running
    print(target.owner_url)


@db_app.command("down")
def db_down() -> None:
    """Stop the embedded cluster."""
    from geoserver.database.cluster import EmbeddedCluster

    s = Settings().database
    if s.database_url:
        fail("GRIDGOV_DATABASE_URL is set: gridgov does not run that server")
    EmbeddedCluster(s.data_dir, os_user=s.cluster_os_user).stop()
    console.print("cluster stopped")


@db_app.command("status")
def db_status() -> None:
    """Say where the database is, whether it runs, and whether its schema is current."""
    from geoserver.database.cluster import EmbeddedCluster

    s = Settings().database
    if not s.database_url:
        for k, v in EmbeddedCluster(s.data_dir, os_user=s.cluster_os_user).status().items():
            print(f"{k}: {v}")
    try:
        with database(start=False) as target:
            print(f"schema: {migrations.schema_status(target.owner_url).explain()}")
    except typer.Exit:
        print("schema: unknown (database not running)")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations and re-apply SQL functions (idempotent)."""
    with database() as target:
        applied = migrations.migrate(target.owner_url)
        console.print(f"applied {len(applied)} migration(s); SQL functions re-applied")


@db_app.command("bootstrap")
def db_bootstrap(
    superuser_url: Annotated[str, typer.Option(help="A superuser's URL on the server.")],
    app_password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
) -> None:
    """Create extensions and roles on an external server (run once, as a superuser)."""
    from sqlalchemy.engine import make_url

    from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE, bootstrap

    s = Settings().database
    if not s.database_url:
        fail("set GRIDGOV_DATABASE_URL (the owner's URL) first")
    owner = make_url(s.database_url or "")
    bootstrap(
        superuser_url, database=owner.database or "gridgov", owner_role=OWNER_ROLE,
        app_role=APP_ROLE, owner_password=owner.password, app_password=app_password,
    )
    console.print("bootstrap done: extensions, gridgov_owner and gridgov_app are in place")


@db_app.command("psql")
def db_psql(
    app_role: Annotated[bool, typer.Option("--app", help="Connect as the app role.")] = False,
) -> None:
    """Open psql on the database (as the owner, or as the RLS-bound app role)."""
    with database(start=False) as target:
        url = target.app_url if app_role else target.owner_url
        sys.exit(subprocess.call([str(find_bindir() / "psql"), url]))


def _dump_url(target: DatabaseTarget) -> str:
    # The superuser can restore extension comments; an external server gets the owner.
    return target.superuser_url or target.owner_url


@db_app.command("backup")
def db_backup(file: Annotated[Path, typer.Argument(help="Archive to write (.tar.gz).")]) -> None:
    """Write the database and the uploaded files into one archive."""
    settings = Settings()
    with database() as target, tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "db.dump"
        subprocess.run(
            [str(find_bindir() / "pg_dump"), "-Fc", "-f", str(dump), _dump_url(target)],
            check=True,
        )
        files = settings.database.data_dir / "files"
        with tarfile.open(file, "w:gz") as tar:
            tar.add(dump, arcname="db.dump")
            if files.is_dir():
                tar.add(files, arcname="files")
    console.print(f"backup written to {file}")


@db_app.command("restore")
def db_restore(file: Annotated[Path, typer.Argument(help="Archive from `db backup`.")]) -> None:
    """Restore an archive from ``db backup`` into an empty database."""
    if not file.is_file():
        fail(f"no such file: {file}")
    settings = Settings()
    with database() as target, tempfile.TemporaryDirectory() as tmp:
        if not migrations.schema_status(target.owner_url).empty:
            fail("the database is not empty: restore goes into a new data directory")
        with tarfile.open(file, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        r = subprocess.run(
            [str(find_bindir() / "pg_restore"), "--exit-on-error", "--single-transaction",
             "-d", _dump_url(target), str(Path(tmp) / "db.dump")],
            capture_output=True, text=True,
        )
        if r.returncode != 0:
            fail(f"pg_restore failed: {r.stderr.strip().splitlines()[-1:]}")
        src = Path(tmp) / "files"
        if src.is_dir():
            shutil.copytree(src, settings.database.data_dir / "files", dirs_exist_ok=True)
        # Cached tiles describe the data before the restore.
        shutil.rmtree(settings.database.data_dir / "tile-cache", ignore_errors=True)
    console.print(f"restored {file}")


def main() -> None:
    """Run the CLI; a gridgov error is one clear line and a non-zero exit, not a traceback."""
    try:
        app()
    except GridgovError as e:
        console.print(f"[bold red]error:[/] {e.detail}", highlight=False)
        sys.exit(1)


user_app = typer.Typer(help="Accounts.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Option(help="Login name.")],
    role: Annotated[list[str], typer.Option(help="Role name (repeatable), e.g. admin.")],
    scope: Annotated[list[str], typer.Option(
        help="Region code of the jurisdiction (repeatable); '*' is the whole tree.")] = ["*"],  # noqa: B006
    display_name: Annotated[str | None, typer.Option(help="Shown name.")] = None,
    password_stdin: Annotated[bool, typer.Option(
        help="Read the password from standard input instead of generating one.")] = False,
) -> None:
    """Create an account (the first administrator, say); prints a generated password once."""
    from geoserver.database.engine import SYSTEM_SCOPE, make_engine, scoped_session
    from geoserver.domain.principal import SYSTEM
    from geoserver.services import users

    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    with database() as target:
        prepare_schema(target)
        engine = make_engine(target.app_url, pool_size=1)
        try:
            with scoped_session(engine, SYSTEM_SCOPE) as s:
                new = users.create_user(
                    s, actor=SYSTEM, username=username, display_name=display_name or username,
                    home_region_code=scope[0], roles=role, scope_codes=scope, password=password)
        except GridgovError as e:
            fail(e.detail)
        finally:
            engine.dispose()
    print(f"created user {new.username} (id {new.id})")
    if new.password:
        print(f"one-time password (change it at first login): {new.password}")


demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")


@demo_app.command("load")
def demo_load(
    scale: Annotated[str, typer.Option(help="tiny (one county), demo (the city), city "
                                             "(benchmark scale).")] = "demo",
    seed: Annotated[int, typer.Option(help="Same seed, same city.")] = 2026,
    if_empty: Annotated[bool, typer.Option(
        "--if-empty", help="Do nothing when the database already holds regions.")] = False,
) -> None:
    """Generate and load a deterministic demo Wenzhou (regions, addresses, base data, staff)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from geoserver.demo.loader import SCALES, load_demo, regions_loaded
    from geoserver.security.crypto import crypto_from_settings

    if scale not in SCALES:
        fail(f"--scale must be one of {', '.join(SCALES)}")
    settings = Settings()
    if settings.server.env == "production":
        fail("demo data has known passwords: it is refused in production mode")
    with database() as target:
        prepare_schema(target)
        if regions_loaded(target.owner_url):
            if if_empty:
                console.print("demo: the database already holds regions; nothing loaded")
                return
            fail("the database already holds regions: demo data loads only into an empty one")
        console.print(f"generating the {scale} city (seed {seed}) …")
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bars:
            tasks: dict[str, object] = {}

            def progress(label: str, done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = bars.add_task(label, total=total)
                bars.update(tasks[label], completed=done, total=total)  # type: ignore[arg-type]

            result = load_demo(target.owner_url, scale=scale, seed=seed,
                               crypto=crypto_from_settings(settings.security), progress=progress)
    for table, n in result["counts"].items():
        print(f"{table:>20}: {n:,}")
    print(f"{'total time':>20}: {sum(result['timings'].values()):.1f} s")
    if result["logins"]:
        from geoserver.demo.steps.staff import DEMO_PASSWORD

        print(f"\ndemo logins (password {DEMO_PASSWORD}):")
        for username, what in result["logins"]:
            print(f"  {username:<22} {what}")

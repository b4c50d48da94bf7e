"""The embedded PostgreSQL + PostGIS cluster that gridgov runs under its data directory.

The CLI process owns the cluster (never a uvicorn worker): it creates it on first use, starts it on
a free loopback port, and stops it on exit. Started as root, the cluster runs as an unprivileged OS
user (``postgres``), which must own the cluster directory and traverse every parent of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from geoserver.errors import ClusterError

PG_MAJOR = 15
SUPERUSER = "gridgov_super"
DATABASE = "gridgov"
#: Where clusters go when the data directory is not reachable by the cluster's OS user.
FALLBACK_ROOT = Path("/var/lib/gridgov/clusters")
_POSTGIS_CONTROL = Path(f"/usr/share/postgresql/{PG_MAJOR}/extension/postgis.control")


@dataclass(frozen=True)
class ClusterInfo:
    """How to reach a running cluster."""

    port: int
    passwords: dict[str, str]

    def url(self, role: str, database: str = DATABASE) -> str:
        """Return a SQLAlchemy/psycopg2 URL for ``role`` on ``database``."""
        pw = quote(self.passwords[role], safe="")
        return f"postgresql://{role}:{pw}@127.0.0.1:{self.port}/{database}"


def find_bindir() -> Path:
    """Return the PostgreSQL 15 binaries, or say which package to install."""
    candidates = [Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
            candidates.append(Path(out))
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise ClusterError(
        f"PostgreSQL {PG_MAJOR} binaries not found: "
        f"apt-get install postgresql-{PG_MAJOR} postgresql-{PG_MAJOR}-postgis-3"
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedCluster:
    """A private PostgreSQL cluster under ``data_dir``."""

    def __init__(self, data_dir: Path, *, os_user: str = "postgres") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.as_root = os.geteuid() == 0
        self.os_user = os_user if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        self.secrets_file = self.data_dir / "secrets.json"
        self.state_file = self.data_dir / "cluster.json"

    # -- locations ---------------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        """Return the cluster directory (inside the data directory unless unreachable)."""
        pointer = self.data_dir / "cluster-location"
        if pointer.exists():
            return Path(pointer.read_text().strip())
        return self.data_dir / "pg"

    @property
    def logfile(self) -> Path:
        """Return the server log (beside the cluster, writable by its OS user)."""
        return self.pgdata.parent / f"{self.pgdata.name}.log"

    def _reachable_by_user(self, path: Path) -> bool:
        if not self.as_root:
            return True
        r = subprocess.run(
            ["runuser", "-u", self.os_user, "--", "test", "-x", str(path)], capture_output=True
        )
        return r.returncode == 0

    def _choose_location(self) -> None:
        """Put the cluster where its OS user can reach it; say so when that is not data_dir."""
        if self._reachable_by_user(self.data_dir):
            return
        digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:12]
        target = FALLBACK_ROOT / digest / "pg"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            for p in (FALLBACK_ROOT.parent, FALLBACK_ROOT, target.parent):
                p.chmod(0o755)
        except OSError as e:
            raise ClusterError(f"cannot create {target.parent}: {e}") from e
        (self.data_dir / "cluster-location").write_text(str(target) + "\n")
        print(
            f"note: {self.data_dir} is not reachable by OS user {self.os_user} "
            f"(a parent directory is private); the cluster lives at {target}"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def _run(self, args: list[str], *, check: bool = True, timeout: float = 120) -> str:
        cmd = (["runuser", "-u", self.os_user, "--"] if self.as_root else []) + args
        # A session of its own: Ctrl-C in the terminal reaches gridgov, which then stops the
        # cluster in order, instead of reaching the postmaster at the same moment.
        r = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True
        )
        if check and r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            raise ClusterError(f"{Path(args[0]).name} failed: {' | '.join(tail)}")
        return r.stdout

    def initialized(self) -> bool:
        """Return whether the cluster directory holds an initialised cluster."""
        return (self.pgdata / "PG_VERSION").exists() and self.secrets_file.exists()

    def ensure_initialized(self) -> None:
        """Create the data directory and run initdb on first use."""
        bindir = find_bindir()
        if not _POSTGIS_CONTROL.exists():
            raise ClusterError(
                f"PostGIS is not installed: apt-get install postgresql-{PG_MAJOR}-postgis-3"
            )
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise ClusterError(f"data directory {self.data_dir} is not writable: {e}") from e
        if self.initialized():
            return
        self._choose_location()
        pgdata = self.pgdata
        if pgdata.exists() and any(pgdata.iterdir()):
            raise ClusterError(
                f"{pgdata} is not empty but holds no complete cluster; move it away to start anew"
            )
        pgdata.mkdir(parents=True, exist_ok=True)
        pgdata.chmod(0o700)
        passwords = {
            SUPERUSER: secrets.token_urlsafe(24),
            "gridgov_owner": secrets.token_urlsafe(24),
            "gridgov_app": secrets.token_urlsafe(24),
        }
        pwfile = pgdata.parent / f".{pgdata.name}.pw"
        pwfile.write_text(passwords[SUPERUSER] + "\n")
        if self.as_root:
            uid = pwd.getpwnam(self.os_user)
            for p in (pgdata, pwfile):
                os.chown(p, uid.pw_uid, uid.pw_gid)
            if not self._reachable_by_user(pgdata):
                raise ClusterError(
                    f"{pgdata} is not reachable by OS user {self.os_user}; "
                    "set GRIDGOV_DATA_DIR to a directory it can traverse"
                )
        try:
            self._run(
                [
                    str(bindir / "initdb"), "-D", str(pgdata), "-U", SUPERUSER,
                    f"--pwfile={pwfile}", "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = pgdata / "postgresql.conf"
        with conf.open("a") as f:
            # Loopback TCP only; no socket in /var/run/postgresql (it may not exist or be shared).
            f.write(
                "\n# gridgov\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                "timezone = 'Asia/Shanghai'\nlog_timezone = 'Asia/Shanghai'\n"
                "shared_buffers = '256MB'\nmax_connections = 200\nfsync = on\n"
                "jit = off\n"
            )
        self.secrets_file.write_text(json.dumps(passwords))
        self.secrets_file.chmod(0o600)

    def _postmaster_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _alive(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"postgres" in cmdline or b"postmaster" in cmdline

    def running_port(self) -> int | None:
        """Return the port of the running cluster, or None when it is not running."""
        pid = self._postmaster_pid()
        if pid is None or not self._alive(pid):
            return None
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            return int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

    def info(self) -> ClusterInfo:
        """Return the connection facts of the running cluster."""
        port = self.running_port()
        if port is None:
            raise ClusterError(f"the cluster in {self.pgdata} is not running (gridgov db up)")
        return ClusterInfo(port=port, passwords=json.loads(self.secrets_file.read_text()))

    def start(self, *, timeout: float = 60) -> tuple[ClusterInfo, bool]:
        """Start the cluster if needed; return its info and whether this call started it."""
        self.ensure_initialized()
        if self.running_port() is not None:
            return self.info(), False
        pid = self._postmaster_pid()
        if pid is not None:
            # A crash or a kill -9 leaves postmaster.pid behind; its process is gone (or reused).
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        port = self._stable_port()
        bindir = find_bindir()
        self.logfile.touch(exist_ok=True)
        if self.as_root:
            uid = pwd.getpwnam(self.os_user)
            os.chown(self.logfile, uid.pw_uid, uid.pw_gid)
        self._run(
            [
                str(bindir / "pg_ctl"), "start", "-D", str(self.pgdata), "-w",
                "-t", str(int(timeout)), "-l", str(self.logfile), "-o", f"-p {port}",
            ],
            timeout=timeout + 10,
        )
        info = self.info()
        self.state_file.write_text(json.dumps({"port": info.port, "pgdata": str(self.pgdata)}))
        return info, True

    def _stable_port(self) -> int:
        """Reuse the last port when free, so running servers reconnect after a restart."""
        with contextlib.suppress(OSError, ValueError, KeyError):
            last = int(json.loads(self.state_file.read_text())["port"])
            with socket.socket() as s:
                # Connections closed by the last shutdown linger in TIME_WAIT; PostgreSQL
                # binds with SO_REUSEADDR, so probe the same way.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", last))
            return last
        return free_port()

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the cluster (fast: roll back open transactions, then shut down cleanly)."""
        if self.running_port() is None:
            return
        self._run(
            [str(find_bindir() / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", mode, "-w",
             "-t", "60"],
            check=False,
        )
        deadline = time.monotonic() + 30
        while self.running_port() is not None and time.monotonic() < deadline:
            time.sleep(0.1)

    def status(self) -> dict[str, object]:
        """Return a small status dict for ``gridgov db status``."""
        port = self.running_port()
        return {
            "data_dir": str(self.data_dir),
            "cluster": str(self.pgdata),
            "initialized": self.initialized(),
            "running": port is not None,
            "port": port,
            "os_user": self.os_user,
        }

"""A throwaway PostgreSQL cluster for tests and benchmarks: the machine's `initdb` + `pg_ctl`, no mocks.

The cluster lives in a fresh temp folder, listens only on 127.0.0.1 (a free port) and on a Unix socket in
that folder, trusts local connections (user `postgres`, no password) and is stopped and deleted by `stop()`
(also at exit). A process killed outright cannot clean up: its folder records the owner's PID, and the next
cluster started on the machine stops and deletes clusters whose owner is gone.
PostgreSQL refuses to run as root, and CI runs as root: then every server command runs as the `postgres`
user (`runuser`), which owns the folder. `fsync=off`: the data is thrown away, so durability only costs time.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

REQUIRE_ENV = "NILUS_REQUIRE_POSTGRES"  # set by .ci/run: a missing PostgreSQL fails the suite instead of skipping
SERVER_USER = "postgres"
PREFIX = "nilus-pg-"
OWNER_FILE = "owner.pid"


class PostgresUnavailable(RuntimeError):
    """initdb/pg_ctl are not installed (or cannot run as the `postgres` user)."""


def _bin_dir() -> Optional[Path]:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    # Debian keeps the server binaries off PATH unless postgresql-common's wrappers link them.
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class PostgresCluster:
    """`with PostgresCluster() as pg: pg.url()`; `pg.create_database(name)` for a database of one's own."""

    def __init__(self, settings: Optional[dict[str, str]] = None):
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise PostgresUnavailable(
                "PostgreSQL's initdb/pg_ctl were not found: install Debian's `postgresql` package "
                "(apt-get install postgresql) or put its bin folder on PATH"
            )
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        self.settings = {"fsync": "off", "full_page_writes": "off", **(settings or {})}
        self.dir: Optional[Path] = None
        self.port = 0

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    def start(self) -> "PostgresCluster":
        self.sweep_orphans()
        # Not pytest's tmp_path: it lives under a root-only folder the `postgres` user cannot enter.
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.dir / OWNER_FILE).write_text(str(os.getpid()))
        data = self.dir / "data"
        if self.as_root:
            shutil.chown(self.dir, user=SERVER_USER)
        atexit.register(self.stop)
        done = self._run("initdb", "-D", str(data), "-A", "trust", "-U", SERVER_USER, "-E", "UTF8",
                         "--locale=C", "--no-sync")
        if done.returncode != 0:
            self.stop()
            raise PostgresUnavailable(f"initdb failed: {(done.stderr or done.stdout).strip()[-500:]}")
        last_error = ""
        for _ in range(3):  # the free port may be taken between choosing and binding it
            self.port = _free_port()
            options = [f"-p {self.port}", f"-k {self.dir}", "-c listen_addresses=127.0.0.1",
                       *(f"-c {k}={v}" for k, v in self.settings.items())]
            done = self._run("pg_ctl", "-D", str(data), "-o", " ".join(options), "-l", str(self.dir / "log"),
                             "-w", "-t", "60", "start")
            if done.returncode == 0:
                return self
            last_error = self.log_tail()
        self.stop()
        raise PostgresUnavailable(f"pg_ctl could not start PostgreSQL: {last_error}")

    def sweep_orphans(self) -> list[Path]:
        """Stop and delete clusters left by processes that no longer exist (killed test runs)."""
        swept = []
        for folder in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
            try:
                owner = int((folder / OWNER_FILE).read_text())
            except (OSError, ValueError):
                continue  # not ours to judge (or still being created)
            if _alive(owner):
                continue
            data = folder / "data"
            if (data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop")
            shutil.rmtree(folder, ignore_errors=True)
            swept.append(folder)
        return swept

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join((self.dir / "log").read_text(errors="replace").splitlines()[-lines:])
        except (OSError, TypeError):
            return ""

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        if self.dir is None:
            return
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> "PostgresCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


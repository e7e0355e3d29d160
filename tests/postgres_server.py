"""A real, throwaway PostgreSQL server for tests (an Optuna RDB storage shared by processes).

SQLite cannot stand in for what several processes do to one PostgreSQL database, so tests that
need it start their own server from the distribution's binaries (`apt-get install -y
postgresql`; CI runs `scripts/ensure_postgres.sh`):

* `initdb` refuses to run as root, and CI runs as root: there the server commands run as
  `nobody` (through `runuser`), in a fresh directory under /tmp that `nobody` owns; pytest's own
  tmp_path (under the 0700 /tmp/pytest-of-root) is not reachable for that user.
* Authentication is `trust`, which is safe only because the server listens on 127.0.0.1 and on
  a Unix socket in that private directory, never on another interface.
* Everything is thrown away: the server is stopped (`pg_ctl stop -m fast`) and its directory
  removed however the test ends; its log is copied to `base_dir/postgresql.log` first.

Use the `postgres_url` fixture (a SQLAlchemy URL), or `running_postgres` directly.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["postgres_binaries", "postgres_url", "require_postgres_binaries", "running_postgres"]

SERVER_USER = "nobody"  # the unprivileged user that runs the server when the tests run as root
DB_USER = "jaxdl"
INSTALL_HINT = "PostgreSQL server binaries not found (apt-get install -y postgresql)"
REQUIRE_ENV = "JAXDL_REQUIRE_POSTGRES"
_START_ATTEMPTS = 3  # a free port can be taken by another process before the server binds it
_LOG_TAIL_CHARS = 4000


def postgres_binaries() -> tuple[Path, Path] | None:
    """(initdb, pg_ctl): from PATH first, else /usr/lib/postgresql/<highest version>/bin."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(initdb), Path(pg_ctl)

    def version(bin_dir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))

    for bin_dir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True):
        initdb_path, pg_ctl_path = bin_dir / "initdb", bin_dir / "pg_ctl"
        if all(os.access(path, os.X_OK) for path in (initdb_path, pg_ctl_path)):
            return initdb_path, pg_ctl_path
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env() -> dict[str, str]:
    # PGDATA, PGPORT, PGHOST, ... of the caller must not steer initdb or pg_ctl elsewhere.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = env["LANG"] = "C"
    return env


def _run(command: list[str | Path], cwd: Path, *, as_root: bool) -> subprocess.CompletedProcess:
    """Runs one server command, as SERVER_USER when this process is root."""
    args = [str(part) for part in command]
    kwargs: dict = {}
    if as_root:
        if shutil.which("runuser"):
            args = ["runuser", "-u", SERVER_USER, "--", *args]
        else:  # no util-linux: drop privileges in the child instead
            entry = pwd.getpwnam(SERVER_USER)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    return subprocess.run(
        args,
        cwd=cwd,  # the server user must be able to enter its working directory
        env=_server_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def _tail(text: str) -> str:
    return text[-_LOG_TAIL_CHARS:]


@contextlib.contextmanager
def running_postgres(base_dir: Path) -> Iterator[str]:
    """Starts a throwaway server and yields its SQLAlchemy URL; stops it however the block ends.

    Raises RuntimeError (with the server log's tail) if it cannot be started, and
    FileNotFoundError if the binaries are missing (see `postgres_binaries`).
    """
    binaries = postgres_binaries()
    if binaries is None:
        raise FileNotFoundError(INSTALL_HINT)
    initdb, pg_ctl = binaries
    as_root = os.geteuid() == 0
    base_dir = Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    # A short path of its own: the socket's path (<dir>/.s.PGSQL.<port>) must stay under ~100
    # bytes, and as root the directory must belong to the server user.
    server_dir = Path(
        tempfile.mkdtemp(prefix="jaxdl-pg-", dir="/tmp" if Path("/tmp").is_dir() else None)
    )
    data_dir, log_file = server_dir / "data", server_dir / "postgresql.log"
    started = False
    try:
        if as_root:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(server_dir, entry.pw_uid, entry.pw_gid)
        init = _run(
            [
                initdb,
                "-D",
                data_dir,
                "-U",
                DB_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            server_dir,
            as_root=as_root,
        )
        if init.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({init.returncode}):\n{_tail(init.stdout + init.stderr)}"
            )
        for attempt in range(1, _START_ATTEMPTS + 1):
            log_start = log_file.stat().st_size if log_file.exists() else 0  # pg_ctl appends
            port = _free_port()
            options = f"-p {port} -k {server_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            start = _run(
                [pg_ctl, "-D", data_dir, "-w", "-t", "60", "-l", log_file, "-o", options, "start"],
                server_dir,
                as_root=as_root,
            )
            started = True  # even a failed start may leave a server behind: always try to stop
            if start.returncode == 0:
                break
            log = (
                log_file.read_bytes()[log_start:].decode(errors="replace")
                if log_file.exists()
                else ""
            )
            if attempt == _START_ATTEMPTS or "could not bind" not in log:
                raise RuntimeError(
                    f"PostgreSQL did not start (pg_ctl exited {start.returncode}):\n"
                    f"{_tail(start.stdout + start.stderr)}\nserver log:\n{_tail(log)}"
                )
        yield f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{port}/postgres"
    finally:
        try:
            if started and (data_dir / "postmaster.pid").exists():
                stop = _run(
                    [pg_ctl, "-D", data_dir, "-w", "-t", "60", "-m", "fast", "stop"],
                    server_dir,
                    as_root=as_root,
                )
                if stop.returncode != 0:  # last resort: no server may outlive its test
                    _run(
                        [pg_ctl, "-D", data_dir, "-m", "immediate", "stop"],
                        server_dir,
                        as_root=as_root,
                    )
            if log_file.exists():
                shutil.copyfile(log_file, base_dir / "postgresql.log")
        finally:
            shutil.rmtree(server_dir, ignore_errors=True)


def require_postgres_binaries() -> None:
    """Skips the calling test without the server binaries; fails it if JAXDL_REQUIRE_POSTGRES=1."""
    if postgres_binaries() is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh PostgreSQL server, stopped after the test.

    Skips the test when the server binaries are missing, or fails it when JAXDL_REQUIRE_POSTGRES=1
    (CI, which installs them with scripts/ensure_postgres.sh).
    """
    require_postgres_binaries()
    with running_postgres(tmp_path / "postgres") as url:
        yield url

"""A sweep's Optuna study in RDB storage, shared by every worker on every machine.

SQLite in the sweep's directory by default; `postgresql://...` for a study that several
machines share. Two rules keep a shared study exact:

* Asking for a trial is serialised across all workers of the study (an fcntl lock beside the
  SQLite file; a PostgreSQL advisory lock on the server), so the study never holds more than
  `--trials` trials and no two workers take the same waiting trial.
* A trial whose worker is gone goes back to WAITING and is taken again with the same parameters
  (Optuna keeps a trial's drawn values), so it resumes instead of being lost or run twice. A
  worker is gone when it ran on this machine and its process is dead, or, from elsewhere, when
  its heartbeat (a trial attribute, refreshed while the trial trains) is older than STALE_SECONDS.
"""

import contextlib
import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from jaxdl.errors import UserInputError, one_line

OWNER_ATTR = "jaxdl_owner"
HEARTBEAT_ATTR = "jaxdl_heartbeat"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0
SCHEMES = ("sqlite", "postgresql")


def default_url(out: Path) -> str:
    return f"sqlite:///{(out / 'study.db').resolve()}"


def masked(url: str) -> str:
    """The URL without its password, for files and messages."""
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def check_url(url: str) -> sqlalchemy.engine.URL:
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception as error:
        raise UserInputError(
            f"--storage {url}: not a database URL ({one_line(error)}); give "
            "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE."
        ) from None
    if parsed.get_backend_name() not in SCHEMES:
        raise UserInputError(
            f"--storage {masked(url)}: jaxdl sweep keeps studies in SQLite or PostgreSQL; give "
            "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE."
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise UserInputError(f"--storage {url}: give a file, sqlite:///PATH/study.db.")
    return parsed


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage for `url`, created if new; a server that cannot be reached exits 2."""
    parsed = check_url(url)
    if parsed.get_backend_name() == "sqlite":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # SQLite: several processes write (workers, their trials' reports); wait for the lock.
    kwargs = {"connect_args": {"timeout": 60}} if parsed.get_backend_name() == "sqlite" else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True, **kwargs})
        except sqlalchemy.exc.IntegrityError:
            # Two processes creating a new database's tables at once: one wins, the other
            # finds them on the next try.
            time.sleep(0.5 * (attempt + 1))
        except Exception as error:
            raise UserInputError(
                f"--storage {masked(url)}: cannot open the study storage "
                f"({type(error).__name__}: {one_line(error)[:300]}); check the URL and the server."
            ) from None
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True, **kwargs})
    except Exception as error:
        raise UserInputError(
            f"--storage {masked(url)}: cannot open the study storage "
            f"({type(error).__name__}: {one_line(error)[:300]}); check the URL and the server."
        ) from None


class AskLock:
    """The study-wide lock around taking a trial (see the module docstring)."""

    def __init__(self, url: str, study_name: str):
        parsed = check_url(url)
        self.sqlite_file = Path(parsed.database) if parsed.get_backend_name() == "sqlite" else None
        self.engine = None if self.sqlite_file else sqlalchemy.create_engine(url)
        # PostgreSQL advisory locks take a 64-bit integer: one per study name.
        digest = hashlib.sha256(f"jaxdl-sweep:{study_name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.sqlite_file is not None:
            # One open file per holder: flock then excludes threads as well as processes.
            with open(f"{self.sqlite_file}.lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        with self.engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            try:
                yield
            finally:
                connection.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key}
                )
                connection.commit()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def this_machine() -> str:
    """Host name and boot id: two containers may share a name, never a boot."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "?"
    return f"{socket.gethostname()}:{boot}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Someone else's process: alive.
    try:  # A killed worker its parent has not reaped yet is a zombie: dead.
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def owner(pid: int | None = None) -> dict[str, Any]:
    return {"machine": this_machine(), "pid": pid or os.getpid()}


def is_orphan(trial: optuna.trial.FrozenTrial, now: float) -> bool:
    """A RUNNING trial whose worker is gone (see the module docstring)."""
    holder = trial.user_attrs.get(OWNER_ATTR)
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    if holder and holder.get("machine") == this_machine():
        return not _process_alive(int(holder["pid"]))
    if beat is None:  # Taken but never marked: its worker died at once.
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        return now - started > STALE_SECONDS
    return now - float(beat) > STALE_SECONDS


def release_orphans(storage: optuna.storages.BaseStorage, study_id: int) -> list[int]:
    """Puts the study's orphaned RUNNING trials back to WAITING; returns their numbers."""
    now = time.time()
    released = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if is_orphan(trial, now):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_state_values(trial_id, TrialState.WAITING)
            released.append(trial.number)
    return released


def mark_taken(storage: optuna.storages.BaseStorage, trial_id: int, pid: int) -> None:
    storage.set_trial_user_attr(trial_id, OWNER_ATTR, owner(pid))
    beat(storage, trial_id)


def beat(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
    storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())

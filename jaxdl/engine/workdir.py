"""What a workdir holds and whether a command may use it.

A workdir is new, a run to resume (same config), a finished run (same config, summary.json), or a
run of a different config, which is refused unless the user asks for `--fresh`. `--fresh` moves
the old contents aside instead of deleting them.
"""

import datetime
import enum
import json
import os
import uuid
from pathlib import Path
from typing import Any

import ml_collections

from jaxdl import config as config_lib
from jaxdl import saved_configs
from jaxdl.errors import UserInputError

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


class WorkdirState(enum.Enum):
    NEW = "new"
    RESUME = "resume"
    FINISHED = "finished"


def config_to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list) + "\n"


BROKEN_RUN_FIX = (
    "restore it, choose another --workdir, or (train only) pass --fresh to move the run aside."
)


def _read_json_object(path: Path) -> dict[str, Any]:
    """A run's JSON file as a dict; anything unreadable is a UserInputError naming the file."""
    if not path.is_file():  # A directory, or a FIFO that would block the read forever.
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise UserInputError(f"{path} is {kind}; {BROKEN_RUN_FIX}")
    try:
        saved = json.loads(path.read_text())
    except UnicodeDecodeError as error:
        raise UserInputError(f"{path} is not text ({error.reason}); {BROKEN_RUN_FIX}") from error
    except json.JSONDecodeError as error:
        raise UserInputError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}); {BROKEN_RUN_FIX}"
        ) from error
    except RecursionError as error:  # Nesting deeper than the parser's stack.
        raise UserInputError(
            f"{path} is nested too deeply to be jaxdl's; {BROKEN_RUN_FIX}"
        ) from error
    if not isinstance(saved, dict):
        raise UserInputError(
            f"{path} holds a JSON {type(saved).__name__}, not an object; {BROKEN_RUN_FIX}"
        )
    return saved


def _saved_config(workdir: Path) -> ml_collections.ConfigDict:
    path = workdir / CONFIG_FILE
    try:
        return ml_collections.ConfigDict(_read_json_object(path))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        # ConfigDict refuses some keys ('a.b', '__class__') that JSON allows.
        raise UserInputError(
            f"{path} is not a jaxdl config ({' '.join(str(error).split())}); {BROKEN_RUN_FIX}"
        ) from error


def _unreadable(workdir: Path, error: OSError) -> UserInputError:
    what = f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    return UserInputError(
        f"--workdir {workdir} cannot be read ({what}); fix its permissions or choose another "
        "--workdir."
    )


def load_config(workdir: Path) -> ml_collections.ConfigDict:
    """The saved config of an existing run (for `jaxdl eval`), checked like a new one."""
    try:
        if workdir.exists() and not workdir.is_dir():
            raise UserInputError(f"--workdir {workdir} is a file, not a run directory.")
        if not (workdir / CONFIG_FILE).exists():
            raise UserInputError(
                f"{workdir / CONFIG_FILE} not found: {workdir} holds no jaxdl run."
            )
        # A run saved by an earlier jaxdl lacks the fields added since: they take their defaults.
        saved = config_lib.flatten(_saved_config(workdir))
        config = saved_configs.unflatten(saved_configs.with_new_fields(saved))
    except OSError as error:
        raise _unreadable(workdir, error) from error
    try:
        config_lib.validate(config)
    except UserInputError as error:
        raise UserInputError(f"{workdir / CONFIG_FILE}: {error}") from error
    except (AttributeError, KeyError, TypeError) as error:
        # A hand-edited config.json can lack fields or hold the wrong kind of value.
        detail = f"no field {error.args[0]!r}" if isinstance(error, KeyError) else str(error)
        raise UserInputError(
            f"{workdir / CONFIG_FILE} is not a complete jaxdl config ({detail}); {BROKEN_RUN_FIX}"
        ) from error
    return config


def check_contained(run_dir: Path) -> None:
    """Refuses a run dir holding a symlink that leads outside it: writes would land elsewhere.

    Symlinked directories are not descended into; a link whose target stays inside is fine. The
    run dir itself may be a link (where the user keeps runs is their choice).
    """
    root = run_dir.resolve()

    def fail(error: OSError) -> None:
        raise error  # os.walk skips unreadable directories unless told otherwise.

    for parent, dirs, files in os.walk(run_dir, onerror=fail, followlinks=False):
        for name in [*dirs, *files]:
            entry = Path(parent, name)
            if not entry.is_symlink():
                continue
            try:
                target = entry.resolve()
            except RuntimeError:  # A symlink loop: nothing can be written through it either.
                target = None
            if target is None or not target.is_relative_to(root):
                what = "that loops" if target is None else f"to {target}, outside the workdir"
                raise UserInputError(
                    f"--workdir {run_dir} holds {entry}, a symlink {what}; jaxdl would write "
                    "through it. Remove the link or choose another --workdir."
                )


def _move_aside(workdir: Path) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = workdir.with_name(f"{workdir.name}.prev-{stamp}")
    counter = 1
    while target.exists():
        target = workdir.with_name(f"{workdir.name}.prev-{stamp}-{counter}")
        counter += 1
    workdir.rename(target)
    return target


def inspect_workdir(workdir: Path, config: ml_collections.ConfigDict, fresh: bool) -> WorkdirState:
    """Decides what to do with `workdir` without changing anything in it."""
    # An invalid value is reported as such, not as a config change that --fresh would "fix".
    config_lib.validate(config)
    try:
        return _inspect(workdir, config, fresh)
    except OSError as error:
        raise _unreadable(workdir, error) from error


def _inspect(workdir: Path, config: ml_collections.ConfigDict, fresh: bool) -> WorkdirState:
    if workdir.is_symlink() and not workdir.exists():
        raise UserInputError(
            f"--workdir {workdir} is a symlink to {os.readlink(workdir)}, which does not exist; "
            "create the target or choose another --workdir."
        )
    if workdir.exists() and not workdir.is_dir():
        raise UserInputError(
            f"--workdir {workdir} is an existing file, not a directory; choose another --workdir."
        )
    if not workdir.exists():
        _check_creatable(workdir)
        return WorkdirState.NEW
    if not any(workdir.iterdir()):
        return WorkdirState.NEW
    if fresh:
        # The old dir is moved aside whole, links and all, which needs its parent writable.
        if not os.access(workdir.parent, os.W_OK | os.X_OK):
            raise UserInputError(
                f"--fresh cannot move {workdir} aside: its parent {workdir.parent} is not "
                "writable. Fix the permissions or choose another --workdir."
            )
        return WorkdirState.NEW
    check_contained(workdir)
    if not (workdir / CONFIG_FILE).exists():
        raise UserInputError(
            f"--workdir {workdir} is not empty and holds no {CONFIG_FILE}, so it is not a jaxdl run; "
            "choose another --workdir, or pass --fresh to move its contents aside."
        )
    saved = config_lib.flatten(_saved_config(workdir))
    changes = [line.strip() for line in saved_configs.diff(saved, config_lib.flatten(config))]
    if changes:
        raise UserInputError(
            f"--workdir {workdir} holds a run with a different config: {'; '.join(changes)}. "
            "Use a new --workdir, or pass --fresh to move the old run aside and start over."
        )
    if not (workdir / SUMMARY_FILE).exists():
        return WorkdirState.RESUME
    # The caller reads it to report the finished run: a damaged one is refused here, by name.
    _read_json_object(workdir / SUMMARY_FILE)
    return WorkdirState.FINISHED


def _check_creatable(workdir: Path) -> None:
    """start_new will mkdir `workdir` with its parents: the nearest existing one must allow it."""
    ancestor = next(parent for parent in workdir.absolute().parents if parent.exists())
    if not ancestor.is_dir():
        raise UserInputError(
            f"--workdir {workdir} cannot be created: {ancestor} is a file, not a directory; "
            "choose another --workdir."
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserInputError(
            f"--workdir {workdir} cannot be created: {ancestor} is not writable; fix its "
            "permissions or choose another --workdir."
        )


def start_new(workdir: Path, config: ml_collections.ConfigDict) -> Path | None:
    """Creates the workdir with its config; returns where an old run was moved, if any."""
    moved = None
    if workdir.exists() and any(workdir.iterdir()):
        moved = _move_aside(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_atomic(workdir / CONFIG_FILE, config_to_json(config))
    return moved


def check_new_dir(out: Path, promise: str = "nothing is overwritten") -> None:
    """`--out` of a command that writes a directory: new, or an empty directory. `promise` says
    what the command guarantees (e.g. "export-hf never overwrites files")."""
    if out.exists() and not out.is_dir():
        raise UserInputError(
            f"--out {out} already exists and is a file; {promise}. Give a new or empty directory."
        )
    if out.is_dir() and any(out.iterdir()):
        raise UserInputError(
            f"--out {out} already exists and is not empty; {promise}. Give a new or empty "
            "directory."
        )


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic: a reader never sees half a file."""
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Writes a new temporary file beside `path`, then renames it over `path`.

    A kill mid-write leaves the old file (or none), never half a file. O_EXCL on a fresh name
    never follows a symlink planted at the temporary path; mode 0o666 lets the umask decide.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

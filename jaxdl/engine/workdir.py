"""What a workdir holds and whether a command may use it.

A workdir is new, a run to resume (same config), a finished run (same config, summary.json), or a
run of a different config, which is refused unless the user asks for `--fresh`. `--fresh` moves
the old contents aside instead of deleting them.
"""

import datetime
import enum
import json
from pathlib import Path
from typing import Any

import ml_collections

from jaxdl import config as config_lib
from jaxdl.errors import UserInputError

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


class WorkdirState(enum.Enum):
    NEW = "new"
    RESUME = "resume"
    FINISHED = "finished"


def config_to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list) + "\n"


def load_config(workdir: Path) -> ml_collections.ConfigDict:
    path = workdir / CONFIG_FILE
    if not path.exists():
        raise UserInputError(f"{path} not found: {workdir} holds no jaxdl run.")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


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
    if fresh or not workdir.exists() or not any(workdir.iterdir()):
        return WorkdirState.NEW
    saved_path = workdir / CONFIG_FILE
    if not saved_path.exists():
        raise UserInputError(
            f"--workdir {workdir} is not empty and holds no {CONFIG_FILE}, so it is not a jaxdl run; "
            "choose another --workdir, or pass --fresh to move its contents aside."
        )
    saved = config_lib.flatten(ml_collections.ConfigDict(json.loads(saved_path.read_text())))
    changes = config_lib.diff(saved, config_lib.flatten(config))
    if changes:
        raise UserInputError(
            f"--workdir {workdir} holds a run with a different config:\n"
            + "\n".join(changes)
            + "\nUse a new --workdir, or pass --fresh to move the old run aside and start over."
        )
    return WorkdirState.FINISHED if (workdir / SUMMARY_FILE).exists() else WorkdirState.RESUME


def start_new(workdir: Path, config: ml_collections.ConfigDict) -> Path | None:
    """Creates the workdir with its config; returns where an old run was moved, if any."""
    moved = None
    if workdir.exists() and any(workdir.iterdir()):
        moved = _move_aside(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / CONFIG_FILE).write_text(config_to_json(config))
    return moved


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic: a reader never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)

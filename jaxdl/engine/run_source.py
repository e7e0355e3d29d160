"""Which run and checkpoint step a config field names: `config.init_from` (a run to start
from) or `config.distill.teacher` (a frozen teacher), as 'WORKDIR' (its best checkpoint) or
'WORKDIR:STEP'. Only looks at the files; reading the arrays is init_from.py's part."""

import dataclasses
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from jaxdl.engine.workdir import CONFIG_FILE
from jaxdl.errors import UserInputError
from jaxdl.logs import absl_warnings_off

FORM = "give a jaxdl run's workdir as 'WORKDIR' (its best checkpoint) or 'WORKDIR:STEP'"


@dataclasses.dataclass(frozen=True)
class Source:
    workdir: Path
    step: int
    field: str = "init_from"  # The config field that names it, for messages.


def fail(spec: str, message: str, field: str = "init_from") -> UserInputError:
    return UserInputError(f"config.{field}={spec!r}: {message}")


def saved_steps(workdir: Path) -> list[int]:
    """The finished checkpoints of a run (Orbax renames a checkpoint to its step when done)."""
    directory = workdir / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(entry.name) for entry in directory.iterdir() if entry.name.isdigit())


def locate(spec: str, own_workdir: Path | None = None, field: str = "init_from") -> Source:
    """The run and step that `config.FIELD` names; UserInputError when there is none."""
    try:
        return _locate(spec, own_workdir, field)
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        raise fail(
            spec, f"cannot be read ({error.strerror or error}{where}); fix its permissions.", field
        ) from error


def _locate(spec: str, own_workdir: Path | None, field: str) -> Source:
    path, step_text = Path(spec), None
    if not path.is_dir() and ":" in spec:
        head, _, step_text = spec.rpartition(":")
        path = Path(head)
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise fail(spec, f"{path} {what}, not a directory; {FORM}.", field)
    if own_workdir is not None and path.resolve() == own_workdir.resolve():
        raise fail(
            spec,
            f"that is this run's own workdir; name another run, or drop config.{field}.",
            field,
        )
    if not (path / CONFIG_FILE).is_file():
        raise fail(spec, f"{path} holds no {CONFIG_FILE}, so it is not a jaxdl run; {FORM}.", field)
    steps = saved_steps(path)
    if not steps:
        raise fail(
            spec,
            f"{path} has no checkpoint yet; let that run save one (train.checkpoint_every), "
            "or start from another run.",
            field,
        )
    if step_text is None:
        return Source(path, best_step(path, steps), field)
    if not step_text.isdigit():
        raise fail(
            spec, f"STEP {step_text!r} is not an integer; {FORM} (saved: {listed(steps)}).", field
        )
    if int(step_text) not in steps:
        raise fail(
            spec,
            f"{path} has no checkpoint of step {int(step_text)}; the saved steps are "
            f"{listed(steps)}.",
            field,
        )
    return Source(path, int(step_text), field)


def listed(steps: list[int]) -> str:
    return ", ".join(map(str, steps))


def read_json_item(directory: Path) -> Any:
    with absl_warnings_off(), ocp.Checkpointer(ocp.JsonCheckpointHandler()) as reader:
        return reader.restore(directory)


def best_step(workdir: Path, steps: list[int]) -> int:
    """The best step named by the newest readable bookkeeping, if saved; else the newest."""
    for step in reversed(steps):
        try:
            loop = read_json_item(workdir.absolute() / "checkpoints" / str(step) / "loop")
        except Exception:
            continue
        best = loop.get("best_step") if isinstance(loop, dict) else None
        return best if best in steps else steps[-1]
    return steps[-1]

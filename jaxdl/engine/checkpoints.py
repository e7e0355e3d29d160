"""Orbax checkpoints of the whole run: train state, data position, loop bookkeeping, and format.

One manager keeps the latest N checkpoints for resuming plus the best one. Which step is best
is part of the loop bookkeeping saved in every checkpoint, so it survives restarts. (With Orbax
0.12.8's metric-based BestN policy, a resumed process deleted the best checkpoint: the metrics
saved by the first process were not taken into account.) Saves are atomic (Orbax writes to a
temporary directory and renames it), so a process killed mid-save leaves the previous
checkpoints intact.

A checkpoint that cannot be read (truncated or missing files, a different structure) is never
deleted: `restore_newest_readable` says which and why, moves it to `<workdir>/unreadable_checkpoints/`
and falls back to the next newest. Each checkpoint records the jaxdl version and checkpoint
format that wrote it (`meta`); jaxdl 0.1.0 wrote none and counts as format 1. Since 0.3.0 the
meta also holds the topology (devices, processes, mesh): a checkpoint restores onto any other,
since the data position is global (data/pipeline.py) and Orbax re-shards the arrays.
"""

import datetime
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

import jaxdl
from jaxdl.errors import UserInputError, one_line

# Bump when a checkpoint's layout changes, add a fixture under tests/fixtures/ written by the
# release before the bump, and list here the formats this code can still restore.
CHECKPOINT_FORMAT = 1
READABLE_FORMATS = (1,)


class _KeepLatestAndBest:
    """An Orbax preservation policy: the newest `keep` steps, and the step named best."""

    def __init__(self, keep: int):
        self.keep = keep
        self.best_step: int | None = None

    def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> Sequence[bool]:
        newest = sorted(info.step for info in checkpoints)[-self.keep :]
        return [info.step in newest or info.step == self.best_step for info in checkpoints]


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {one_line(error)[:300]}"


class Checkpointer:
    def __init__(self, directory: Path, keep: int, topology: dict[str, Any] | None = None):
        self.directory = directory.absolute()
        self.topology = topology
        self._policy = _KeepLatestAndBest(keep)
        options = ocp.CheckpointManagerOptions(
            preservation_policy=self._policy,
            cleanup_tmp_directories=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        data_iterator: Any,
        loop_state: dict[str, Any],
    ) -> None:
        """Starts an asynchronous save (`wait` ends it); `loop_state['best_step']` is kept until a
        better one comes."""
        self._policy.best_step = loop_state["best_step"]
        if step in self.manager.all_steps():
            # A resumed run replaying steps reaches the same state; the saved copy stands.
            return
        meta = {"jaxdl_version": jaxdl.__version__, "checkpoint_format": CHECKPOINT_FORMAT}
        if self.topology is not None:
            meta["topology"] = self.topology
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=grain.checkpoint.CheckpointSave(data_iterator),
                loop=ocp.args.JsonSave(loop_state),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )

    def read_meta(self, step: int) -> dict[str, Any]:
        """The checkpoint's meta item; {} for jaxdl 0.1.0's (none) or an unreadable one."""
        if not (self.directory / str(step) / "meta").exists():
            return {}
        try:
            meta = self.manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            ).meta
        except Exception:
            return {}
        return meta if isinstance(meta, dict) else {}

    def check_format(self, step: int) -> None:
        """Raises UserInputError, naming the version that wrote it, if this code cannot read it."""
        meta = self.read_meta(step)
        if not meta:
            return  # jaxdl 0.1.0: format 1.
        fmt, version = meta.get("checkpoint_format"), meta.get("jaxdl_version", "?")
        if fmt not in READABLE_FORMATS:
            newer = isinstance(fmt, int) and fmt > CHECKPOINT_FORMAT
            raise UserInputError(
                f"checkpoint {self.directory / str(step)} was written by jaxdl {version} "
                f"(checkpoint format {fmt}); jaxdl {jaxdl.__version__} reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}. "
                + (
                    f"Upgrade jaxdl to {version} or later to resume it."
                    if newer
                    else f"Resume it with jaxdl {version} (pip install jaxdl=={version}), or "
                    "start over with --fresh."
                )
            )

    def restore(
        self, step: int, abstract_state: Any, data_iterator: Any
    ) -> tuple[Any, dict[str, Any]]:
        """The state (placed as `abstract_state`'s shardings say) and the loop bookkeeping.

        `data_iterator` is moved in place to where the checkpoint left it.
        """
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                loop=ocp.args.JsonRestore(),
            ),
        )
        self._restore_data(step, data_iterator)
        return restored.state, restored.loop

    def _restore_data(self, step: int, data_iterator: Any) -> None:
        """The data position. Grain's handler wants the file of this process count; a position
        saved by another number of processes is global (the same in each file): any one does."""
        directory = self.directory / str(step) / "data"
        own = directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        files = [own] if own.exists() else sorted(directory.glob("process_0-of-*.json"))
        if not files:
            raise FileNotFoundError(f"{directory} holds no data position (process_*-of-*.json)")
        state = files[0].read_text()
        parsed = json.loads(state)  # A cut file fails here, as Grain's own restore would.
        if isinstance(data_iterator, grain.DatasetIterator):
            data_iterator.set_state(parsed)
        else:
            data_iterator.set_state(state.encode())

    def restore_newest_readable(
        self,
        abstract_state: Any,
        data_iterator: Any,
        report: Callable[[str], None],
        *,
        below: int | None = None,
        move_aside: bool = True,
    ) -> tuple[int, Any, dict[str, Any]] | None:
        """`(step, state, loop)` of the newest checkpoint that restores, or None if there is none.

        Newer checkpoints that fail to restore are reported and (with `move_aside`) moved out of
        the way, untouched. If every checkpoint fails, nothing is moved and the run stops:
        starting over would rewrite metrics.jsonl. `below` only considers steps under it.
        """
        steps = [s for s in reversed(self.all_steps()) if below is None or s < below]
        failures = []
        for step in steps:
            self.check_format(step)
            try:
                state, loop = self.restore(step, abstract_state, data_iterator)
            except Exception as error:
                failures.append((step, error))
                continue
            for bad_step, error in failures:
                where = self.move_aside(bad_step) if move_aside else None
                report(
                    f"jaxdl: checkpoint step {bad_step} cannot be read ({_reason(error)})"
                    + (f"; moved it to {where}" if where else "")
                    + f"; using step {step}"
                )
            return step, state, loop
        if failures:
            reasons = "; ".join(f"step {s}: {_reason(e)}" for s, e in failures)
            raise UserInputError(
                f"no checkpoint in {self.directory} can be read ({reasons}). Nothing was moved or "
                "deleted; start over with --fresh (the old run is moved aside) or a new --workdir."
            )
        return None

    def move_aside(self, step: int, why: str = "unreadable") -> Path:
        """Moves a step's directory out of Orbax's sight, to `<workdir>/<why>_checkpoints/`."""
        target_dir = self.directory.parent / f"{why}_checkpoints"
        target_dir.mkdir(exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        target = target_dir / f"{step}-{stamp}"
        shutil.move(str(self.directory / str(step)), str(target))
        self.manager.reload()
        return target

    def restore_state(self, step: int, abstract_state: Any) -> Any:
        """Only the train state, e.g. the best checkpoint for the final test evaluation."""
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        )
        return restored.state

    def restore_loop(self, step: int) -> dict[str, Any]:
        restored = self.manager.restore(step, args=ocp.args.Composite(loop=ocp.args.JsonRestore()))
        return restored.loop

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()

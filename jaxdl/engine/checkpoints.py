"""Orbax checkpoints of the whole run: train state, data iterator position and loop bookkeeping.

One manager keeps the latest N checkpoints for resuming plus the best one. Which step is best
is part of the loop bookkeeping saved in every checkpoint, so it survives restarts. (With Orbax
0.12.8's metric-based BestN policy, a resumed process deleted the best checkpoint: the metrics
saved by the first process were not taken into account.) Saves are
atomic (Orbax writes to a temporary directory and renames it), so a process killed mid-save
leaves the previous checkpoints intact.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grain
import orbax.checkpoint as ocp


class _KeepLatestAndBest:
    """An Orbax preservation policy: the newest `keep` steps, and the step named best."""

    def __init__(self, keep: int):
        self.keep = keep
        self.best_step: int | None = None

    def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> Sequence[bool]:
        newest = sorted(info.step for info in checkpoints)[-self.keep :]
        return [info.step in newest or info.step == self.best_step for info in checkpoints]


class Checkpointer:
    def __init__(self, directory: Path, keep: int):
        self._policy = _KeepLatestAndBest(keep)
        options = ocp.CheckpointManagerOptions(
            preservation_policy=self._policy,
            cleanup_tmp_directories=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(directory.absolute(), options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

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
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=grain.checkpoint.CheckpointSave(data_iterator),
                loop=ocp.args.JsonSave(loop_state),
            ),
            force=True,
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
                data=grain.checkpoint.CheckpointRestore(data_iterator),
                loop=ocp.args.JsonRestore(),
            ),
        )
        return restored.state, restored.loop

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

"""Evaluating a finished or running workdir's checkpoint (`jaxdl eval`). It writes nothing."""

import sys
from pathlib import Path
from typing import Any

from jaxdl import config as config_lib
from jaxdl.engine import steps, workdir
from jaxdl.engine.checkpoints import Checkpointer
from jaxdl.engine.setup import Setup, setup
from jaxdl.errors import UserInputError


def _report(line: str) -> None:
    print(line, file=sys.stderr)


def evaluate_workdir(run_dir: Path, which: str, split: str) -> dict:
    """Metrics of checkpoint `which` ('best', 'latest' or a step) on `split`."""
    plan, step, state = restore_checkpoint(run_dir, which)
    metrics = steps.make_eval_fn(plan)(state, split)
    return {"step": step, "split": split, **metrics}


def restore_checkpoint(run_dir: Path, which: str) -> tuple[Setup, int, Any]:
    """(plan, step, state) of checkpoint `which` ('best', 'latest' or a step) of a workdir,
    laid out over the devices here.

    An unreadable checkpoint is reported and the newest readable one below it is used instead;
    unlike `jaxdl train`, this leaves it where it is (the next train run moves it aside).
    """
    config = config_lib.with_default_layout(workdir.load_config(run_dir))
    plan = setup(config)
    checkpointer = Checkpointer(run_dir / "checkpoints", keep=config.train.keep_checkpoints)
    try:
        saved = checkpointer.all_steps()
        if not saved:
            raise UserInputError(f"{run_dir}/checkpoints holds no checkpoint yet.")
        if which in ("latest", "best"):
            step = saved[-1]
        elif which.isdigit() and int(which) in saved:
            step = int(which)
        else:
            raise UserInputError(
                f"--checkpoint {which}: choose best, latest or a saved step "
                f"({', '.join(map(str, saved))})."
            )
        # The newest readable checkpoint at or below `step`; its bookkeeping names the best step.
        feed = steps.open_batch_feed(plan)
        restored = checkpointer.restore_newest_readable(
            plan.abstract_state, feed, _report, below=step + 1, move_aside=False
        )
        feed.close()
        if restored is None:
            raise UserInputError(f"{run_dir}/checkpoints holds no checkpoint at or below {step}.")
        step, state, loop_state = restored
        best = loop_state.get("best_step")
        if which == "best" and best is not None and best != step:
            try:
                state, step = checkpointer.restore_state(best, plan.abstract_state), best
            except Exception as error:
                _report(
                    f"jaxdl: the best checkpoint (step {best}) cannot be read "
                    f"({type(error).__name__}); using step {step} instead"
                )
    finally:
        checkpointer.close()
    return plan, step, state

"""Evaluating a finished or running workdir's checkpoint (`jaxdl eval`)."""

from pathlib import Path

from jaxdl.engine import loop, workdir
from jaxdl.engine.checkpoints import Checkpointer
from jaxdl.errors import UserInputError


def evaluate_workdir(run_dir: Path, which: str, split: str) -> dict:
    """Metrics of checkpoint `which` ('best', 'latest' or a step) on `split`."""
    config = workdir.load_config(run_dir)
    plan = loop.setup(config)
    checkpointer = Checkpointer(run_dir / "checkpoints", keep=config.train.keep_checkpoints)
    latest = checkpointer.latest_step()
    if latest is None:
        raise UserInputError(f"{run_dir}/checkpoints holds no checkpoint yet.")
    if which == "latest":
        step = latest
    elif which == "best":
        step = checkpointer.restore_loop(latest)["best_step"] or latest
    elif which.isdigit() and int(which) in checkpointer.manager.all_steps():
        step = int(which)
    else:
        steps = ", ".join(map(str, checkpointer.manager.all_steps()))
        raise UserInputError(
            f"--checkpoint {which}: choose best, latest or a saved step ({steps})."
        )
    state = checkpointer.restore_state(step, plan.abstract_state)
    metrics = loop.make_eval_fn(plan)(state, split)
    checkpointer.close()
    return {"step": step, "split": split, **metrics}

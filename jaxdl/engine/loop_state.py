"""The training loop's bookkeeping: what the loop knows besides the train state.

Best score, step and metrics, the patience count, wall and timed seconds, the log window's
partial tally, the non-finite record, and whether an evaluation callback stopped the run. It is
a JSON dict saved in every checkpoint with the state, so a resumed run carries on where the
saved one was; `with_defaults` fills in the keys that older checkpoints lack.
"""

from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from jaxdl import pruning

# Called after each validation evaluation with the step and the validation metrics (names
# without the "val/" prefix, as logged). A non-empty string returned stops the run at that step,
# with that string as the run's status (e.g. "pruned"); None or "" lets it go on. Every process
# of a multi-process run calls it and must return the same answer.
EvaluationCallback = Callable[[int, dict[str, float]], str | None]


def new_loop_state() -> dict[str, Any]:
    return {
        "best_score": None,
        "best_step": None,
        "best_metrics": {},
        "evals_since_best": 0,
        "stopped_early": False,
        "wall_seconds": 0.0,
        "timed_steps": 0,
        "timed_seconds": 0.0,
        # The log window's tallies at the checkpoint (steps.tally_to_host), so a run saved
        # between two log steps logs the same window means when resumed.
        "window": None,
        "nonfinite": {"skipped_updates": 0, "rollbacks": [], "learning_rate_scale": 1.0},
        # {"step": int, "reason": str} once an evaluation callback stopped the run.
        "stopped_by": None,
    }


def with_defaults(loop: dict[str, Any]) -> dict[str, Any]:
    """Loop bookkeeping from a checkpoint; those of earlier versions lack the newer keys."""
    return {**new_loop_state(), **loop}


def record_validation(
    loop: dict[str, Any], step: int, val: dict[str, float], config: ml_collections.ConfigDict
) -> bool:
    """Updates best step and patience in the loop bookkeeping; True when `val` is a new best.
    Evaluations before `pruning.monitor_from` (e.g. of a half-pruned model) are not candidates."""
    train = config.train
    if step < pruning.monitor_from(config):
        return False
    sign = 1.0 if train.monitor_mode == "max" else -1.0
    score = sign * val[train.monitor]
    improved = loop["best_score"] is None or score > loop["best_score"]
    if improved:
        loop.update(best_score=score, best_step=step, best_metrics=val, evals_since_best=0)
    else:
        loop["evals_since_best"] += 1
    loop["stopped_early"] = bool(train.patience and loop["evals_since_best"] >= train.patience)
    return improved


def ask_callbacks(
    loop: dict[str, Any],
    callbacks: Sequence[EvaluationCallback],
    step: int,
    val: dict[str, float],
) -> str | None:
    """Calls the callbacks in order; the first reason to stop is recorded and returned."""
    for callback in callbacks:
        reason = callback(step, dict(val))
        if reason:
            loop["stopped_by"] = {"step": step, "reason": str(reason)}
            return str(reason)
    return None


def stop_reason(loop: dict[str, Any]) -> str | None:
    """Why a restored run had already stopped (killed after the stop, before its summary)."""
    if loop["nonfinite"].get("stopped"):
        return "diverged"
    return loop["stopped_by"]["reason"] if loop["stopped_by"] else None

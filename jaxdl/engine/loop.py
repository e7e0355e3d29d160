"""The training loop: one loop for every task.

`setup` (engine/setup.py) builds and checks everything without touching the workdir, so bad input
fails before anything is written. `train` then runs, evaluates, checkpoints and resumes; the task
supplies only `init_state`, `train_step` and `eval_step`. Around the steps it handles what a
machine does to a run: preemption signals (engine/preemption.py), a kill at any instant (every
file is written atomically or append-only, and a resume rewinds to the newest readable
checkpoint), and non-finite updates (engine/nonfinite.py).
"""

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from jaxdl import pruning
from jaxdl.engine import image_grid, init_from, loop_state, nonfinite, quality_monitor, steps
from jaxdl.engine.checkpoints import Checkpointer
from jaxdl.engine.faults import FaultPlan
from jaxdl.engine.fingerprint import count_params, tree_fingerprint
from jaxdl.engine.loop_state import EvaluationCallback
from jaxdl.engine.metrics_log import MetricsLog, format_metrics
from jaxdl.engine.plots import plot_curves
from jaxdl.engine.preemption import Preempted, Preemption
from jaxdl.engine.run_facts import Throughput, describe_topology, topology
from jaxdl.engine.run_report import end_of_run
from jaxdl.engine.setup import Setup, adopt_structure, setup, with_learning_rate_scale
from jaxdl.engine.workdir import SUMMARY_FILE, write_json

__all__ = ["EvaluationCallback", "Setup", "Throughput", "setup", "train"]


def _describe(plan: Setup, num_params: int, step: int) -> str:
    splits = ", ".join(f"{name}={len(src)}" for name, src in plan.dataset.splits.items())
    return (
        f"jaxdl: {plan.config.model.name} on {plan.dataset.name} ({splits}), "
        f"{num_params:,} params, {jax.devices()[0].platform}: {describe_topology(topology(plan))}, "
        + (f"resuming at step {step}" if step else "starting")
    )


class _Run:
    """One process's part of a run: restore or start, train, finish. Holds what the steps change."""

    def __init__(
        self,
        plan: Setup,
        workdir: Path,
        faults: FaultPlan,
        preemption: Preemption,
        quality: quality_monitor.SampleQuality | None,
        on_evaluation: Sequence[EvaluationCallback] = (),
    ):
        self.base_plan, self.plan, self.quality = plan, plan, quality
        self.on_evaluation = tuple(on_evaluation)
        self.workdir, self.faults, self.preemption = workdir, faults, preemption
        train = plan.config.train
        # Read once: a ConfigDict attribute costs microseconds, and the loop runs per step.
        self.num_steps, self.log_every = train.num_steps, train.log_every
        self.eval_every, self.checkpoint_every = train.eval_every, train.checkpoint_every
        self.checkpoint_seconds = 60.0 * train.get("checkpoint_every_minutes", 0.0)
        self.processes = jax.process_count()
        # Process 0 writes the logs, plots and summary; Orbax saves from every process.
        self.writer = jax.process_index() == 0
        # XLA's CPU runtime can deadlock in a collective when many steps are queued on several
        # (virtual) CPU devices: 2 devices, 50 queued data-parallel steps hung in an all-reduce
        # every time here, 16 never did. So on CPU meshes the loop lets at most 8 run ahead.
        self.max_queued = 8 if plan.on_cpu and plan.mesh.size > 1 else 0
        self.policy = steps.nonfinite_policy(plan)
        self.checked = steps.checked_names(plan)
        self.checkpointer = Checkpointer(
            workdir / "checkpoints", keep=train.keep_checkpoints, topology=topology(plan)
        )
        self.feed = steps.open_batch_feed(plan)
        self.log: MetricsLog | None = None
        self.bar: tqdm | None = None
        self.wall_start = time.perf_counter()
        restored = self.checkpointer.restore_newest_readable(
            plan.abstract_state, self.feed, tqdm.write
        )
        if restored is None:
            self.state = init_from.start_state(plan, workdir, tqdm.write)
            self.loop = loop_state.new_loop_state()
        else:
            restored_step, self.state, loop = restored
            self.loop = loop_state.with_defaults(loop)
            self._report_topology(restored_step)
        self.step = int(jax.device_get(self.state.step))
        self.stop_reason = loop_state.stop_reason(self.loop)  # Killed after a stop: no training.
        self._compile()
        self.log = MetricsLog(workdir, resume_step=self.step, enabled=self.writer)

    def _report_topology(self, step: int) -> None:
        saved = self.checkpointer.read_meta(step).get("topology")
        now = self.checkpointer.topology
        if saved is not None and saved != now:
            tqdm.write(
                f"jaxdl: checkpoint step {step} was written on {describe_topology(saved)}; continuing on "
                f"{describe_topology(now)}. The data stream continues at the same global position."
            )

    def _compile(self) -> None:
        """The steps for the current learning-rate scale (lowered after each rollback)."""
        record = self.loop["nonfinite"]
        self.plan = with_learning_rate_scale(self.base_plan, record["learning_rate_scale"])
        nan_steps = () if record["rollbacks"] else self.faults.nan_at_step
        self.state = adopt_structure(self.plan, self.state)
        self.train_step = steps.make_train_step(self.plan, nan_steps)
        self.evaluate = steps.make_eval_fn(self.plan)
        self.images = steps.make_image_fn(self.plan)
        self.tally = steps.zero_tally(self.plan, self.loop["window"])
        self.first_step_of_process = True  # Its time is compilation, not training.

    def train(self) -> None:
        plan, config = self.plan, self.plan.config
        self.throughput = Throughput(self.loop["timed_steps"], self.loop["timed_seconds"])
        self.num_params = count_params(plan.task.params(self.state))
        tqdm.write(_describe(plan, self.num_params, self.step))
        self.bar = tqdm(
            total=self.num_steps,
            initial=self.step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=None if config.train.progress_bar and self.writer else True,
        )
        self.last_save = time.monotonic()
        while self.step < self.num_steps and not (self.loop["stopped_early"] or self.stop_reason):
            chunk = self.feed.next_chunk(self.step)
            self.state, self.tally = self.train_step(self.state, chunk, self.tally)
            self.step += 1
            step = self.step
            self.bar.update(1)
            self.faults.after_step(step)
            if self.max_queued and step % self.max_queued == 0:
                jax.block_until_ready(self.state)
            if self.first_step_of_process:
                jax.block_until_ready(self.state)
                self.throughput.start(step)
                self.first_step_of_process = False

            is_last = step == self.num_steps
            preempted = self.preemption.reached(step)
            at_log_step = step % self.log_every == 0 or is_last
            if at_log_step and self._sync(end_window=True):
                continue  # Rolled back, or stopping: the state it would save is not this one.
            do_eval = step % self.eval_every == 0 or is_last
            do_checkpoint = (
                step % self.checkpoint_every == 0 or is_last or self._time_due(at_log_step)
            )
            if not (do_eval or do_checkpoint or preempted):
                continue
            jax.block_until_ready(self.state)
            self.throughput.stop(step)
            if not at_log_step and self._sync(end_window=False):
                continue
            improved = False
            if do_eval:
                val = self.evaluate(self.state, "validation")
                if self.quality:
                    val.update(self.quality.measure(self.state, "validation"))
                self.log.write(step, "val", val)
                tqdm.write(f"step {step}: val {format_metrics(val)}")
                self._write_images(step)
                improved = loop_state.record_validation(self.loop, step, val, config)
                reason = loop_state.ask_callbacks(self.loop, self.on_evaluation, step, val)
                if reason:
                    tqdm.write(f"jaxdl: stopped at step {step} by an evaluation callback: {reason}")
                    self.stop_reason = reason
                    break  # Saved once, after the loop.
            if do_checkpoint or improved or self.loop["stopped_early"] or preempted:
                self._save(wait=preempted)
            if preempted:
                self.log.flush()
                raise Preempted(self.preemption.signal_name or "SIGTERM", step)
            self.throughput.start(step)
        self.bar.close()
        if self.stop_reason:
            self._save(wait=True)

    def _write_images(self, step: int) -> None:
        """The task's evaluation images as grids (every process computes, process 0 writes)."""
        if self.images is None:
            return
        images = self.images(self.state)
        if self.writer:
            image_grid.write_grids(self.workdir, step, images, self.log.write_image)

    def _time_due(self, at_log_step: bool) -> bool:
        if not self.checkpoint_seconds:
            return False
        if self.processes == 1:
            return time.monotonic() - self.last_save >= self.checkpoint_seconds
        if not at_log_step:
            return False  # Hosts decide together, at log steps only, as host 0's clock says.
        due = time.monotonic() - self.last_save >= self.checkpoint_seconds
        return bool(multihost_utils.broadcast_one_to_all(np.bool_(due)))

    def _save(self, wait: bool = False) -> None:
        now = time.perf_counter()
        self.loop.update(
            wall_seconds=self.loop["wall_seconds"] + now - self.wall_start,
            timed_steps=self.throughput.steps,
            timed_seconds=self.throughput.seconds,
            window=steps.tally_to_host(self.tally),
        )
        self.wall_start = now
        self.checkpointer.save(self.step, self.state, self.feed, self.loop)
        self.faults.after_save_started(self.step)
        self.last_save = time.monotonic()
        if wait or self.plan.on_cpu:
            # On CPU the background write competes with the steps for the same cores;
            # waiting here was faster in wall time too (digits_mlp: 7.7 s vs 8.0 s).
            self.checkpointer.wait()

    def _sync(self, end_window: bool) -> bool:
        """Reads the tallies; at a log step, logs the window. True if the run rolled back or stops."""
        host = steps.tally_to_host(self.tally)
        health = host["health"]
        if end_window:
            counted = host["counted"]
            metrics = {k: v / counted if counted else math.nan for k, v in host["sums"].items()}
            if self.policy != "off":
                metrics["skipped_updates"] = float(health["skipped"])
            self.log.write(self.step, "train", metrics)
            self.bar.set_postfix_str(format_metrics(metrics), refresh=False)
        if health["tripped_step"] >= 0:
            self._after_streak(health)
            return True
        if end_window:
            self.loop["nonfinite"]["skipped_updates"] += health["skipped"]
            self.tally = steps.next_window(self.plan, host)
        return False

    def _after_streak(self, health: dict[str, Any]) -> None:
        """`train.nonfinite_patience` updates in a row were dropped: roll back, or stop."""
        train = self.plan.config.train
        record = dict(self.loop["nonfinite"])
        record["skipped_updates"] += health["skipped"]
        start, where = health["tripped_start"], nonfinite.describe_bad(self.checked, health["bad"])
        streak = (
            f"{train.nonfinite_patience} non-finite updates in a row from step {start} (in {where})"
        )
        if self.policy == "stop" or len(record["rollbacks"]) >= train.nonfinite_max_rollbacks:
            record["stopped"] = {"step": self.step, "streak_start": start, "nonfinite": where}
            self.loop["nonfinite"] = record
            self.stop_reason = "diverged"
            tqdm.write(
                f"jaxdl: stopping at step {self.step}: {streak}. Lower optimizer.learning_rate, set "
                "optimizer.grad_clip_norm, or rerun with --config.debug_nans=True to find the operation."
            )
            return
        # Everything saved from the streak on belongs to the abandoned trajectory.
        self.checkpointer.wait()
        for saved in self.checkpointer.all_steps():
            if saved >= start:
                self.checkpointer.move_aside(saved, why="rolled_back")
        restored = self.checkpointer.restore_newest_readable(
            self.base_plan.abstract_state, self.feed, tqdm.write
        )
        if restored is None:
            self.feed.close()
            self.feed = steps.open_batch_feed(self.base_plan)
            state = init_from.start_state(self.base_plan, self.workdir, tqdm.write)
            loop = loop_state.new_loop_state()
        else:
            _, state, loop = restored
        scale = record["learning_rate_scale"] * train.nonfinite_lr_factor
        target = int(jax.device_get(state.step))
        record["rollbacks"] = [
            *record["rollbacks"],
            {"at_step": self.step, "streak_start": start, "to_step": target, "scale": scale},
        ]
        record["learning_rate_scale"] = scale
        self.loop = {**loop_state.with_defaults(loop), "nonfinite": record}
        self.state, self.step = state, target
        self._compile()
        self.log.rewind(target)
        self.bar.reset(total=self.num_steps)
        self.bar.update(target)
        tqdm.write(
            f"jaxdl: {streak}: rolled back to step {target}, learning rate x{scale:g} "
            f"(rollback {len(record['rollbacks'])} of at most {train.nonfinite_max_rollbacks})"
        )

    def finish(self, run_info: dict[str, Any] | None) -> dict[str, Any]:
        """Tests the best checkpoint and writes summary.json and curves.png."""
        if self.preemption.signal_name:  # Arrived after the last step's check; all is saved.
            raise Preempted(self.preemption.signal_name, self.step)
        self.checkpointer.wait()
        config, loop = self.plan.config, self.loop
        if loop["stopped_early"]:
            tqdm.write(
                f"early stop at step {self.step}: no {config.train.monitor} improvement in "
                f"{config.train.patience} evaluations"
            )
        best_step, best_state = loop["best_step"], self.state
        if best_step is not None and best_step != self.step:
            try:
                best_state = self.checkpointer.restore_state(best_step, self.plan.abstract_state)
            except Exception as error:
                where = self.checkpointer.move_aside(best_step)
                tqdm.write(
                    f"jaxdl: the best checkpoint (step {best_step}) cannot be read ({error!r:.200}); "
                    f"moved it to {where}; testing the final state instead"
                )
                best_step, best_state = self.step, self.state
        test_sums = self.evaluate(best_state, "test", raw=True)
        test = self.plan.task.finalize_eval(dict(test_sums))
        if self.quality:
            test.update(self.quality.measure(best_state, "test"))
        self.log.write(self.step, "test", test)
        tqdm.write(f"test (best checkpoint, step {best_step}): {format_metrics(test)}")
        status = self.stop_reason or ("stopped_early" if loop["stopped_early"] else "completed")
        summary = {
            "status": status,
            "final_metrics": {f"test/{k}": v for k, v in test.items()},
            "final_metrics_step": best_step,
            **self.plan.task.summary_fields(test),
            **end_of_run(
                self.plan, self.evaluate, best_state, test_sums, self.workdir, self.writer
            ),
            **({"sample_quality": self.quality.report(test)} if self.quality else {}),
            "best_metrics": {
                "step": best_step,
                **{f"val/{k}": v for k, v in loop["best_metrics"].items()},
            },
            "steps": self.step,
            "stopped_early": loop["stopped_early"],
            "nonfinite": loop["nonfinite"],
            **({"stopped_by": loop["stopped_by"]} if loop["stopped_by"] else {}),
            "wall_seconds": round(loop["wall_seconds"] + time.perf_counter() - self.wall_start, 3),
            "steps_per_second": self.throughput.steps_per_second,
            "params_fingerprint": tree_fingerprint(self.plan.task.params(self.state)),
            "num_params": self.num_params,
            "devices": self.plan.mesh.size,
            "processes": self.processes,
            "mesh": topology(self.plan)["mesh"],
            "mesh_mode": topology(self.plan)["mode"],
            "platform": jax.devices()[0].platform,
            "jax_version": jax.__version__,
            **init_from.summary_entry(self.workdir),
            **pruning.summary_entry(self.plan.config, self.plan.task.params(self.state)),
            **(run_info or {}),
        }
        if self.writer:
            write_json(self.workdir / SUMMARY_FILE, summary)
            plot_curves(self.workdir, self.workdir / "curves.png")
        return summary

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.log is not None:
            self.log.close()
        self.checkpointer.close()
        self.feed.close()


def train(
    plan: Setup,
    workdir: Path,
    faults: FaultPlan | None = None,
    run_info: dict[str, Any] | None = None,
    preemption: Preemption | None = None,
    quality: quality_monitor.SampleQuality | None = None,
    on_evaluation: Sequence[EvaluationCallback] = (),
) -> dict[str, Any]:
    """Trains to the end (or early stop), resuming from the newest readable checkpoint.

    `run_info` (e.g. the command line) is copied into summary.json as is. With `preemption`
    (the CLI's), SIGTERM and SIGINT end the run with a checkpoint and raise `Preempted`.
    `quality` measures a generative run's samples (engine/quality_monitor.py); left out, it is
    opened from the config when the config asks for it. `on_evaluation` callbacks
    (loop_state.EvaluationCallback) see each validation's step and metrics; the first to return
    a reason (e.g. "pruned") stops the run there, saved, tested, with that reason as its status.
    """
    # Never entered, so no handlers: library callers (tests, benchmarks) are never preempted.
    preemption = preemption or Preemption()
    debug_nans = jax.config.jax_debug_nans
    jax.config.update("jax_debug_nans", bool(plan.config.get("debug_nans", False)))
    try:
        quality = quality or quality_monitor.open_for(plan)
        run = _Run(plan, workdir, faults or FaultPlan(), preemption, quality, on_evaluation)
        try:
            with preemption.deferring():
                run.train()
            return run.finish(run_info)
        finally:
            run.close()
    finally:
        jax.config.update("jax_debug_nans", debug_nans)

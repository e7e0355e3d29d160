"""The training loop: one loop for every task.

`setup` builds and checks everything (data, task, mesh, state shapes) without touching the workdir,
so bad input fails before anything is written. `train` then runs, evaluates, checkpoints and
resumes; the task supplies only `init_state`, `train_step` and `eval_step`.
"""

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxdl import config as config_lib
from jaxdl import data
from jaxdl.engine import feed as feed_lib
from jaxdl.engine import sharding
from jaxdl.engine.checkpoints import Checkpointer
from jaxdl.engine.faults import FaultPlan
from jaxdl.engine.fingerprint import count_params, tree_fingerprint
from jaxdl.engine.metrics_log import MetricsLog, format_metrics
from jaxdl.engine.plots import plot_curves
from jaxdl.engine.workdir import SUMMARY_FILE, write_json
from jaxdl.errors import UserInputError
from jaxdl.tasks import Task, build_task


@dataclasses.dataclass(frozen=True)
class Setup:
    """A checked run plan: everything `train` and `evaluate` need except the workdir."""

    config: ml_collections.ConfigDict
    dataset: data.DatasetSpec
    augmentations: tuple
    task: Task
    mesh: jax.sharding.Mesh
    abstract_state: Any  # ShapeDtypeStructs carrying their shardings.
    eval_metric_names: tuple[str, ...]
    train_metric_shapes: dict[str, jax.ShapeDtypeStruct]

    @property
    def state_sharding(self) -> Any:
        return jax.tree.map(lambda leaf: leaf.sharding, self.abstract_state)

    @property
    def batch_sharding(self) -> jax.sharding.NamedSharding:
        return sharding.batch_sharding(self.mesh)

    def example_batch(self) -> dict[str, np.ndarray]:
        return _example_batch(self.dataset)

    @property
    def on_cpu(self) -> bool:
        return self.mesh.devices.flat[0].platform == "cpu"

    @property
    def steps_per_transfer(self) -> int:
        """Train batches moved to the devices in one transfer (see engine/feed.py)."""
        local_batch = self.config.data.batch_size // jax.process_count()
        one_example = sum(value.nbytes for value in self.example_batch().values())
        return feed_lib.steps_per_transfer(local_batch * one_example)


def _example_batch(dataset: data.DatasetSpec) -> dict[str, np.ndarray]:
    # One example is enough: parameter shapes never depend on the batch size.
    return {
        "input": np.zeros((1, *dataset.input_shape), np.float32),
        "label": np.zeros((1,), np.int32),
    }


def setup(config: ml_collections.ConfigDict) -> Setup:
    """Resolves and checks a config; raises UserInputError on anything a user must fix."""
    config_lib.validate(config)
    dataset = data.load_dataset(config.data)
    augmentations = data.build_augmentations(config.data, dataset.input_shape)
    task = build_task(config, dataset)
    mesh = sharding.make_mesh(config.mesh.num_devices)
    sharding.check_batch_divisible(config.data.batch_size, mesh, "data.batch_size")
    sharding.check_batch_divisible(config.data.eval_batch_size, mesh, "data.eval_batch_size")

    example = _example_batch(dataset)
    shapes = jax.eval_shape(task.init_state, jax.random.PRNGKey(0), example)
    shardings = sharding.state_shardings(shapes, mesh, config.mesh.strategy)
    abstract_state = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )
    eval_shapes = jax.eval_shape(
        task.eval_step, shapes, {**example, "mask": np.ones(1, np.float32)}
    )
    eval_metric_names = tuple(sorted(name for name in eval_shapes if name != "count"))
    _, train_metric_shapes = jax.eval_shape(task.train_step, shapes, example)
    if config.train.monitor not in eval_metric_names:
        raise UserInputError(
            f"config.train.monitor={config.train.monitor!r} is not a validation metric of task "
            f"{config.task.name!r}; choose one of {', '.join(eval_metric_names)}."
        )
    return Setup(
        config,
        dataset,
        augmentations,
        task,
        mesh,
        abstract_state,
        eval_metric_names,
        train_metric_shapes,
    )


# XLA's optimising CPU backend spends seconds on the threefry random bits of parameter
# initialisation: 4.2 s to compile one normal draw of 1,152 numbers here, 0.15 s without the
# optimisations, and 6 s of every quick CNN run's 19 s. A program that runs once needs none of
# it. (The values then differ from an optimised build's in the last bit of a few percent of them.)
_RUN_ONCE_CPU_OPTIONS = {"xla_backend_optimization_level": 0}


def init_state(plan: Setup) -> Any:
    """The task's fresh state, placed as the plan's shardings say."""
    init = jax.jit(plan.task.init_state, out_shardings=plan.state_sharding)
    args = (jax.random.PRNGKey(plan.config.seed), plan.example_batch())
    options = _RUN_ONCE_CPU_OPTIONS if plan.on_cpu else None
    return init.lower(*args).compile(compiler_options=options)(*args)


# Salt that separates the augmentation key stream from the task's keys (which use the raw seed).
_AUGMENT_SALT = 0x61756720


def make_train_step(plan: Setup) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """The jitted step `(state, chunk, metric_sums) -> (state, metric_sums + metrics)`.

    It takes its batch from a chunk of several steps' batches (engine/feed.py), runs the
    augmentations on the device, then the task's step. Augmentation is keyed by the
    seed and `state.step`, so every step's draw is fixed whether or not the run was resumed.
    Metrics are summed on the device, so the loop fetches them once per `log_every` steps, not
    once per step. The state and the sums are donated: their buffers are updated in place.
    """
    task, augmentations = plan.task, plan.augmentations
    augment_key = jax.random.fold_in(jax.random.PRNGKey(plan.config.seed), _AUGMENT_SALT)

    def step(state: Any, chunk: dict[str, jax.Array], sums: Any) -> tuple[Any, Any]:
        batch = feed_lib.select_batch(chunk, state.step)
        key = jax.random.fold_in(augment_key, state.step)
        state, metrics = task.train_step(state, data.augment_batch(augmentations, batch, key))
        return state, jax.tree.map(lambda total, value: total + value, sums, metrics)

    replicated = sharding.replicated(plan.mesh)
    return jax.jit(
        step,
        in_shardings=(plan.state_sharding, feed_lib.chunk_sharding(plan.mesh), replicated),
        out_shardings=(plan.state_sharding, replicated),
        donate_argnums=(0, 2),
    )


def zero_metric_sums(plan: Setup) -> dict[str, jax.Array]:
    """Zeros shaped like the task's train metrics: the start of each `log_every` window."""
    return jax.device_put(
        jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), plan.train_metric_shapes),
        sharding.replicated(plan.mesh),
    )


def make_eval_fn(plan: Setup):
    """Returns `evaluate(state, split) -> metrics` over one full pass of a split."""
    eval_step = jax.jit(
        plan.task.eval_step,
        in_shardings=(plan.state_sharding, plan.batch_sharding),
        out_shardings=sharding.replicated(plan.mesh),
    )
    local_batch = plan.config.data.eval_batch_size // jax.process_count()

    def evaluate(state: Any, split: str) -> dict[str, float]:
        sums = None
        for batch in data.eval_batches(plan.dataset, split, batch_size=local_batch):
            out = eval_step(state, sharding.put_batch(batch, plan.batch_sharding))
            sums = out if sums is None else jax.tree.map(np.add, sums, out)
        sums = {name: float(value) for name, value in jax.device_get(sums).items()}
        return plan.task.finalize_eval(sums)

    return evaluate


class Throughput:
    """Steady-state steps/s: counts only stretches of pure training, after the first (compiling) step."""

    def __init__(self, steps: int = 0, seconds: float = 0.0):
        self.steps, self.seconds = steps, seconds
        self._start: tuple[float, int] | None = None

    def start(self, step: int) -> None:
        self._start = (time.perf_counter(), step)

    def stop(self, step: int) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start[0]
            self.steps += step - self._start[1]
            self._start = None

    @property
    def steps_per_second(self) -> float | None:
        return self.steps / self.seconds if self.seconds > 0 else None


def _new_loop_state() -> dict[str, Any]:
    return {
        "best_score": None,
        "best_step": None,
        "best_metrics": {},
        "evals_since_best": 0,
        "stopped_early": False,
        "wall_seconds": 0.0,
        "timed_steps": 0,
        "timed_seconds": 0.0,
    }


def _mean_metrics(sums: dict[str, jax.Array], count: int) -> dict[str, float]:
    return {name: float(value) / count for name, value in jax.device_get(sums).items()}


def _record_validation(
    loop: dict[str, Any], step: int, val: dict[str, float], train: ml_collections.ConfigDict
) -> bool:
    """Updates best step and patience in the loop bookkeeping; True when `val` is a new best."""
    sign = 1.0 if train.monitor_mode == "max" else -1.0
    score = sign * val[train.monitor]
    improved = loop["best_score"] is None or score > loop["best_score"]
    if improved:
        loop.update(best_score=score, best_step=step, best_metrics=val, evals_since_best=0)
    else:
        loop["evals_since_best"] += 1
    loop["stopped_early"] = bool(train.patience and loop["evals_since_best"] >= train.patience)
    return improved


def open_train_iterator(plan: Setup):
    config = plan.config
    return data.train_iterator(
        plan.dataset,
        batch_size=config.data.batch_size // jax.process_count(),
        seed=config.seed,
        worker_count=config.data.worker_count,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )


def open_batch_feed(plan: Setup) -> feed_lib.BatchFeed:
    """The train batches as the step takes them: chunks of several steps, on the devices."""
    return feed_lib.BatchFeed(open_train_iterator(plan), plan.mesh, plan.steps_per_transfer)


def _describe(plan: Setup, num_params: int, step: int) -> str:
    splits = ", ".join(f"{name}={len(src)}" for name, src in plan.dataset.splits.items())
    return (
        f"jaxdl: {plan.config.model.name} on {plan.dataset.name} ({splits}), "
        f"{num_params:,} params, {plan.mesh.size} {jax.devices()[0].platform} device(s), "
        + (f"resuming at step {step}" if step else "starting")
    )


def train(
    plan: Setup,
    workdir: Path,
    faults: FaultPlan | None = None,
    run_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Trains to the end (or early stop), resuming from the latest checkpoint if there is one.

    `run_info` (e.g. the command line) is copied into summary.json as is.
    """
    faults = faults or FaultPlan()
    config = plan.config
    wall_start = time.perf_counter()
    num_steps = config.train.num_steps
    # Read once: a ConfigDict attribute costs microseconds, and the loop runs per step.
    log_every, eval_every = config.train.log_every, config.train.eval_every
    checkpoint_every = config.train.checkpoint_every

    checkpointer = Checkpointer(workdir / "checkpoints", keep=config.train.keep_checkpoints)
    batches = open_batch_feed(plan)
    latest = checkpointer.latest_step()
    if latest is None:
        state, loop = init_state(plan), _new_loop_state()
    else:
        state, loop = checkpointer.restore(latest, plan.abstract_state, batches)
    step = int(jax.device_get(state.step))
    throughput = Throughput(loop["timed_steps"], loop["timed_seconds"])
    log = MetricsLog(workdir, resume_step=step)
    evaluate = make_eval_fn(plan)
    train_step = make_train_step(plan)
    num_params = count_params(plan.task.params(state))
    tqdm.write(_describe(plan, num_params, step))
    bar = tqdm(
        total=num_steps,
        initial=step,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        disable=None if config.train.progress_bar else True,
    )

    metric_sums, summed_steps = zero_metric_sums(plan), 0
    first_step_of_process = True
    while step < num_steps and not loop["stopped_early"]:
        state, metric_sums = train_step(state, batches.next_chunk(step), metric_sums)
        step += 1
        summed_steps += 1
        bar.update(1)
        faults.after_step(step)
        if first_step_of_process:  # Its time is compilation, not training.
            jax.block_until_ready(state)
            throughput.start(step)
            first_step_of_process = False

        is_last = step == num_steps
        if step % log_every == 0 or is_last:
            train_metrics = _mean_metrics(metric_sums, summed_steps)
            metric_sums, summed_steps = zero_metric_sums(plan), 0
            log.write(step, "train", train_metrics)
            bar.set_postfix_str(format_metrics(train_metrics), refresh=False)

        do_eval = step % eval_every == 0 or is_last
        do_checkpoint = step % checkpoint_every == 0 or is_last
        if not (do_eval or do_checkpoint):
            continue
        jax.block_until_ready(state)
        throughput.stop(step)
        improved = False
        if do_eval:
            val = evaluate(state, "validation")
            log.write(step, "val", val)
            tqdm.write(f"step {step}: val {format_metrics(val)}")
            improved = _record_validation(loop, step, val, config.train)
        if do_checkpoint or improved or loop["stopped_early"]:
            now = time.perf_counter()
            loop.update(
                wall_seconds=loop["wall_seconds"] + now - wall_start,
                timed_steps=throughput.steps,
                timed_seconds=throughput.seconds,
            )
            wall_start = now
            checkpointer.save(step, state, batches, loop)
            faults.after_save_started(step)
            if plan.on_cpu:
                # On CPU the background write competes with the steps for the same cores;
                # waiting here was faster in wall time too (digits_mlp: 7.7 s vs 8.0 s).
                checkpointer.wait()
        throughput.start(step)
    bar.close()
    checkpointer.wait()
    if loop["stopped_early"]:
        tqdm.write(
            f"early stop at step {step}: no {config.train.monitor} improvement in "
            f"{config.train.patience} evaluations"
        )

    best_step = loop["best_step"]
    if best_step is None or best_step == step:
        best_state = state
    else:
        best_state = checkpointer.restore_state(best_step, plan.abstract_state)
    test = evaluate(best_state, "test")
    log.write(step, "test", test)
    tqdm.write(f"test (best checkpoint, step {best_step}): {format_metrics(test)}")

    summary = {
        "final_metrics": {f"test/{k}": v for k, v in test.items()},
        "final_metrics_step": best_step,
        "best_metrics": {
            "step": best_step,
            **{f"val/{k}": v for k, v in loop["best_metrics"].items()},
        },
        "steps": step,
        "stopped_early": loop["stopped_early"],
        "wall_seconds": round(loop["wall_seconds"] + time.perf_counter() - wall_start, 3),
        "steps_per_second": throughput.steps_per_second,
        "params_fingerprint": tree_fingerprint(plan.task.params(state)),
        "num_params": num_params,
        "devices": plan.mesh.size,
        "platform": jax.devices()[0].platform,
        "jax_version": jax.__version__,
        **(run_info or {}),
    }
    write_json(workdir / SUMMARY_FILE, summary)
    plot_curves(workdir, workdir / "curves.png")
    log.close()
    checkpointer.close()
    batches.close()
    return summary

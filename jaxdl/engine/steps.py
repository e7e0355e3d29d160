"""The compiled pieces of a run: the train step with its on-device tallies, evaluation, the feed.

The loop (engine/loop.py) only calls these; benchmarks call them directly.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxdl import data
from jaxdl.engine import feed as feed_lib
from jaxdl.engine import nonfinite, sharding
from jaxdl.engine.setup import Setup
from jaxdl.tasks import Task

# Salt that separates the augmentation key stream from the task's keys (which use the raw seed).
_AUGMENT_SALT = 0x61756720


def nonfinite_policy(plan: Setup) -> str:
    # JAX's NaN checker names the operation only if a NaN reaches an output of the step, and
    # the guard would keep it inside: debug_nans switches the guard off.
    return "off" if plan.config.get("debug_nans", False) else plan.config.train.nonfinite


def checked_names(plan: Setup) -> list[str]:
    return nonfinite.checked_names(plan.abstract_state, sorted(plan.train_metric_shapes))


def zero_tally(plan: Setup, host: dict[str, Any] | None = None) -> dict[str, Any]:
    """The running tallies of a log window, on the device: metric sums, steps counted, health.

    `host` (a tally fetched to the host earlier, as a checkpoint saves it) restores one.
    """
    tally = {
        "sums": {name: np.zeros(s.shape, s.dtype) for name, s in plan.train_metric_shapes.items()},
        "counted": np.int32(0),
        "health": nonfinite.zero_health(len(checked_names(plan))),
    }
    if host is not None:
        tally = _fill(tally, host)
    return jax.device_put(tally, sharding.replicated(plan.mesh))


def _fill(zero: Any, host: Any) -> Any:
    """`zero` with the values `host` has for it. A tally saved by another version may lack a
    metric or hold another number of health flags: those entries stay at zero."""
    if isinstance(zero, dict):
        host = host if isinstance(host, dict) else {}
        return {
            key: _fill(value, host[key]) if key in host else value for key, value in zero.items()
        }
    value = np.asarray(host, zero.dtype)
    return value if value.shape == zero.shape else zero


def next_window(plan: Setup, host: dict[str, Any]) -> dict[str, Any]:
    """The tally for the next log window: sums and counts at zero, a streak of drops kept."""
    health = {**host["health"], "skipped": 0, "tripped_step": -1, "tripped_start": 0}
    zero_sums = {name: 0.0 for name in host["sums"]}
    return zero_tally(plan, {"sums": zero_sums, "counted": 0, "health": health})


def tally_to_host(tally: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready: float32 sums survive the round trip through Python floats exactly."""
    return jax.tree.map(lambda value: np.asarray(value).tolist(), jax.device_get(tally))


def accumulate_grads(
    task: Task, state: Any, batch: dict[str, jax.Array], steps: int, place: Callable | None = None
) -> tuple[Any, dict[str, jax.Array], Any]:
    """The task's (grads, metrics, state) for `batch`, computed `steps` micro-batches at a time.

    Micro-batch i holds rows i, i + steps, i + 2 * steps, ...: with the batch split evenly over
    devices, every device holds the same share of every micro-batch. A scan runs them one after
    the other, so activations are held for one micro-batch at a time; gradients and metrics are
    averaged, and state changes (batch-norm statistics) carry from one micro-batch to the next.
    `place` constrains the layout of the stacked micro-batches (a jit step over a mesh).
    """
    if steps == 1:
        return task.compute_grads(state, batch)

    def split(x: jax.Array) -> jax.Array:
        micro = x.reshape(x.shape[0] // steps, steps, *x.shape[1:]).swapaxes(0, 1)
        return place(micro) if place is not None else micro

    micro_batches = jax.tree.map(split, batch)
    first = jax.tree.map(lambda x: x[0], micro_batches)
    grad_shapes, metric_shapes, _ = jax.eval_shape(task.compute_grads, state, first, 0)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (grad_shapes, metric_shapes))

    def one(carry: Any, inputs: Any) -> tuple[Any, None]:
        (grad_sum, metric_sum), state = carry
        index, micro = inputs
        grads, metrics, state = task.compute_grads(state, micro, index)
        sums = jax.tree.map(jnp.add, (grad_sum, metric_sum), (grads, metrics))
        return (sums, state), None

    ((grad_sum, metric_sum), state), _ = jax.lax.scan(
        one, (zeros, state), (jnp.arange(steps), micro_batches)
    )
    mean = jax.tree.map(lambda total: total / steps, (grad_sum, metric_sum))
    return (*mean, state)


def make_update(plan: Setup) -> Callable:
    """`(state, batch) -> (state, metrics)`: one optimizer update from one global batch.

    mesh.mode=jit: the task's step over the sharded batch; XLA partitions it (and inserts the
    collectives) from the shardings. mesh.mode=shard_map: the step is written per device: each
    device computes gradients on its own examples, `lax.pmean` averages them (and the metrics)
    over the batch axes, and every device applies the same update to its replica, which is
    what `jax.pmap` programs did. Both accumulate `train.grad_accum_steps` micro-batches.
    """
    task, mesh = plan.task, plan.mesh
    accum = int(plan.config.train.get("grad_accum_steps", 1))
    if plan.config.mesh.get("mode", "jit") == "shard_map":
        axes = sharding.BATCH_AXES

        def per_device(state: Any, batch: dict[str, jax.Array]) -> tuple[Any, Any]:
            grads, metrics, state = accumulate_grads(task, state, batch, accum)
            grads, metrics = jax.lax.pmean((grads, metrics), axes)
            return task.apply_grads(state, grads, metrics)

        specs = jax.tree.map(lambda s: s.spec, plan.state_sharding)
        # check_vma=False: the gradients inside are each device's own, and the pmean above is
        # the one all-reduce (with the check on, JAX would already sum them over devices).
        return jax.shard_map(
            per_device,
            mesh=mesh,
            in_specs=(specs, P(axes)),
            out_specs=(specs, P()),
            check_vma=False,
        )
    if accum == 1:
        return task.train_step
    micro_layout = sharding.batch_sharding(mesh, leading=1)

    def update(state: Any, batch: dict[str, jax.Array]) -> tuple[Any, Any]:
        place = lambda x: jax.lax.with_sharding_constraint(x, micro_layout)  # noqa: E731
        grads, metrics, state = accumulate_grads(task, state, batch, accum, place)
        return task.apply_grads(state, grads, metrics)

    return update


def make_train_step(plan: Setup, nan_steps: tuple[int, ...] = ()) -> Callable:
    """The jitted step `(state, chunk, tally) -> (state, tally)`.

    It takes its batch from a chunk of several steps' batches (engine/feed.py), runs the
    augmentations on the device, then the task's step, then the non-finite guard
    (engine/nonfinite.py). Augmentation is keyed by the seed and `state.step`, so every step's
    draw is fixed whether or not the run was resumed. Metrics are summed on the device, so the
    loop fetches them once per `log_every` steps, not once per step. The state and the tally
    are donated: their buffers are updated in place. `nan_steps` (fault injection) makes the
    updates that produce those steps NaN.
    """
    update, augmentations = make_update(plan), plan.augmentations
    augment_key = jax.random.fold_in(jax.random.PRNGKey(plan.config.seed), _AUGMENT_SALT)
    policy = nonfinite_policy(plan)
    patience = 0 if policy == "skip" else int(plan.config.train.nonfinite_patience)
    poisoned_steps = jnp.asarray(nan_steps, jnp.int32)

    def step(state: Any, chunk: dict[str, jax.Array], tally: Any) -> tuple[Any, Any]:
        batch = feed_lib.select_batch(chunk, state.step)
        key = jax.random.fold_in(augment_key, state.step)
        new_state, metrics = update(state, data.augment_batch(augmentations, batch, key))
        if nan_steps:
            new_state = nonfinite.poison(new_state, jnp.isin(new_state.step, poisoned_steps))
        health = tally["health"]
        ok = jnp.bool_(True)
        if policy != "off":
            new_state, metrics, ok, bad = nonfinite.guard(state, new_state, metrics)
            health = nonfinite.update_health(health, ok, bad, new_state.step, patience)
        sums = jax.tree.map(lambda total, value: total + value, tally["sums"], metrics)
        counted = tally["counted"] + ok.astype(jnp.int32)
        return new_state, {"sums": sums, "counted": counted, "health": health}

    replicated = sharding.replicated(plan.mesh)
    # With debug_nans JAX re-runs a step that produced a NaN, which needs its inputs intact.
    donate = () if plan.config.get("debug_nans", False) else (0, 2)
    return jax.jit(
        step,
        in_shardings=(plan.state_sharding, feed_lib.chunk_sharding(plan.mesh), replicated),
        out_shardings=(plan.state_sharding, replicated),
        donate_argnums=donate,
    )


_IMAGES_SALT = 0x1A6E5  # The evaluation images' key: the same at every evaluation of a run.


def make_image_fn(plan: Setup) -> Callable[[Any], dict[str, np.ndarray]] | None:
    """`images(state) -> {name: (N, H, W, C) array}` for a task that makes images, else None."""
    if not plan.task.makes_images:
        return None
    key = jax.random.fold_in(jax.random.PRNGKey(plan.config.seed), _IMAGES_SALT)
    images = jax.jit(
        plan.task.evaluation_images,
        in_shardings=(plan.state_sharding, None),
        out_shardings=sharding.replicated(plan.mesh),
    )
    # Replicated: every process holds the whole batch, so its first local copy is the value.
    return lambda state: {
        name: np.asarray(batch.addressable_data(0)) for name, batch in images(state, key).items()
    }


def make_eval_fn(plan: Setup, state_sharding: Any = None) -> Callable[..., dict[str, Any]]:
    """Returns `evaluate(state, split) -> metrics` over one full pass of a split;
    `evaluate(state, split, raw=True)` returns the summed `eval_step` outputs instead (before
    `finalize_eval`: an end-of-run report reads them, engine/run_report.py).

    `state_sharding` is the train state's by default; a state of another layout (e.g. a
    quantized model's parameters) gives its own, or one sharding for the whole tree."""
    eval_step = jax.jit(
        plan.task.eval_step,
        in_shardings=(state_sharding or plan.state_sharding, plan.batch_sharding),
        out_shardings=sharding.replicated(plan.mesh),
    )
    local_batch = plan.config.data.eval_batch_size // jax.process_count()

    def evaluate(state: Any, split: str, raw: bool = False) -> dict[str, Any]:
        # Each process reads its slice of every batch; the jitted sums span all processes.
        sums = None
        batches = data.eval_batches(
            plan.dataset,
            split,
            batch_size=local_batch,
            shard_index=jax.process_index(),
            shard_count=jax.process_count(),
        )
        for batch in batches:
            out = eval_step(state, sharding.put_batch(batch, plan.batch_sharding))
            sums = out if sums is None else jax.tree.map(np.add, sums, out)
        # Scalars, or arrays a task reduces itself (e.g. score histograms for average precision).
        sums = {
            name: float(value) if np.ndim(value) == 0 else np.asarray(value)
            for name, value in jax.device_get(sums).items()
        }
        return sums if raw else plan.task.finalize_eval(sums)

    return evaluate


def open_train_iterator(plan: Setup) -> Any:
    config = plan.config
    return data.train_iterator(
        plan.dataset,
        batch_size=config.data.batch_size // jax.process_count(),
        seed=config.seed,
        worker_count=config.data.worker_count,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        sampler=config.data.get("sampler", "uniform"),
    )


def open_batch_feed(plan: Setup) -> feed_lib.BatchFeed:
    """The train batches as the step takes them: chunks of several steps, on the devices."""
    return feed_lib.BatchFeed(open_train_iterator(plan), plan.mesh, plan.steps_per_transfer)

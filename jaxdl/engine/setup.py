"""A checked run plan: `setup(config)` resolves and checks everything before a workdir is touched.

Data, augmentations, task, mesh, batch divisibility, state shapes (`jax.eval_shape`) and the
monitored metric are all checked here, so bad input fails before anything is written.
"""

import dataclasses
from typing import Any

import jax
import ml_collections
import numpy as np
from flax.core import meta

from jaxdl import config as config_lib
from jaxdl import data, tasks
from jaxdl.data.imbalance import check_sampler
from jaxdl.engine import feed as feed_lib
from jaxdl.engine import run_source, sample_quality, sharding, workdir
from jaxdl.errors import UserInputError
from jaxdl.models import build_model
from jaxdl.tasks import Task
from jaxdl.tasks.distillation import Teacher


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything `train` and `evaluate` need except the workdir."""

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
        return feed_lib.steps_per_transfer(data.batch_nbytes(self.dataset, local_batch))


def _example_batch(dataset: data.DatasetSpec) -> dict[str, np.ndarray]:
    # One example of every declared key is enough: parameter shapes never depend on the batch
    # size.
    return data.example_batch(dataset, 1)


def unboxed_init(task: Task) -> Any:
    """`task.init_state` without the logical-axis boxes models put around their parameters."""
    return lambda rng, batch: meta.unbox(task.init_state(rng, batch))


def _batch_axis_name(config: ml_collections.ConfigDict) -> tuple[str, ...] | None:
    return sharding.BATCH_AXES if config.mesh.mode == "shard_map" else None


def _check_step_split(
    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, task: Task
) -> None:
    """Gradient accumulation and per-device steps: what they need from the task and the mesh."""
    accum = config.train.grad_accum_steps
    per_device = config.data.batch_size // sharding.batch_shards(mesh)
    if per_device % accum:
        raise UserInputError(
            f"config.train.grad_accum_steps={accum} does not divide the per-device batch of "
            f"{per_device} (data.batch_size={config.data.batch_size} over "
            f"{sharding.batch_shards(mesh)} devices); use a divisor of {per_device}."
        )
    needs_split = [
        field
        for field, used in (
            ("mesh.mode=shard_map", config.mesh.mode == "shard_map"),
            ("train.grad_accum_steps>1", accum > 1),
        )
        if used
    ]
    if needs_split and not task.splits_gradient_step:
        raise UserInputError(
            f"config.{needs_split[0]}: task {config.task.name!r} writes its own train step "
            "(no compute_grads/apply_grads), so it runs only as one jit step without accumulation."
        )
    if config.mesh.mode == "shard_map" and (mesh.shape["fsdp"], mesh.shape["tensor"]) != (1, 1):
        raise UserInputError(
            f"config.mesh.mode=shard_map splits the batch only, but mesh.fsdp={mesh.shape['fsdp']} "
            f"and mesh.tensor={mesh.shape['tensor']}; set both to 1, or use mesh.mode=jit to "
            "split parameters."
        )


def build_task(
    config: ml_collections.ConfigDict, dataset: data.DatasetSpec, batch_axis_name: Any = None
) -> Task:
    """The config's task, with its teacher when `config.distill.teacher` names one: that run's
    model, built from its config.json (its variables come with the state, engine/init_from.py)."""
    task = tasks.build_task(config, dataset, batch_axis_name=batch_axis_name)
    spec = config.distill.teacher
    if not spec:
        return task
    source = run_source.locate(spec, field="distill.teacher")
    teacher_config = workdir.load_config(source.workdir)
    if teacher_config.task.name != "classification":
        raise run_source.fail(
            spec,
            f"{source.workdir} is a task.name={teacher_config.task.name!r} run; a teacher is a "
            "classifier.",
            "distill.teacher",
        )
    model = build_model(
        teacher_config.model,
        num_classes=dataset.num_classes,
        vocab_size=dataset.vocab_size,
        batch_axis_name=batch_axis_name,
    )
    distill = config.distill
    return task.with_teacher(Teacher(model, distill.temperature, distill.alpha))


def setup(config: ml_collections.ConfigDict) -> Setup:
    """Resolves and checks a config; raises UserInputError on anything a user must fix."""
    config_lib.validate(config)
    dataset = data.load_dataset(config.data)
    # Refused here, not at the first batch: data.sampler needs a dataset with class labels.
    check_sampler(dataset, config.data.get("sampler", "uniform"))
    augmentations = data.build_augmentations(config.data, dataset.input_shape, dataset.num_classes)
    task = build_task(config, dataset, batch_axis_name=_batch_axis_name(config))
    mesh = sharding.make_mesh(config_lib.mesh_axis_sizes(config), config.mesh.num_devices)
    if dataset.batching is None:  # Packs of graphs are sized to divide by the devices.
        sharding.check_batch_divisible(config.data.batch_size, mesh, "data.batch_size")
        sharding.check_batch_divisible(config.data.eval_batch_size, mesh, "data.eval_batch_size")
    _check_processes(config)
    _check_step_split(config, mesh, task)
    _check_packs_whole(config, dataset)

    example = _example_batch(dataset)
    boxed = jax.eval_shape(task.init_state, jax.random.PRNGKey(0), example)
    shapes = meta.unbox(boxed)
    shardings = sharding.state_shardings(shapes, sharding.logical_names(boxed), mesh)
    abstract_state = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )
    eval_shapes = jax.eval_shape(
        task.eval_step, shapes, {"mask": np.ones(1, np.float32), **example}
    )
    quality_names = sample_quality.metric_names(config, task)
    if quality_names:
        sample_quality.check_fields(config.sample_quality)
    eval_metric_names = tuple(sorted({*task.eval_metric_names(eval_shapes), *quality_names}))
    # Outside a shard_map the batch axes are unbound: shapes come from the same task without.
    # (The state's apply_fn is its task's model: it comes from the same task's init.)
    plain_task = task if _batch_axis_name(config) is None else build_task(config, dataset)
    plain_shapes = jax.eval_shape(unboxed_init(plain_task), jax.random.PRNGKey(0), example)
    _, train_metric_shapes = jax.eval_shape(plain_task.train_step, plain_shapes, example)
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


def _check_packs_whole(config: ml_collections.ConfigDict, dataset: data.DatasetSpec) -> None:
    """A dataset with its own batching (graph packs) has no row axis to split a batch along."""
    if dataset.batching is None:
        return
    for field, used in (
        ("train.grad_accum_steps", config.train.grad_accum_steps > 1),
        ("mesh.mode", config.mesh.mode == "shard_map"),
    ):
        if used:
            raise UserInputError(
                f"config.{field}: dataset {config.data.name!r} is batched as packs of graphs, "
                "which are not split into micro-batches or per-device rows; use "
                "train.grad_accum_steps=1 and mesh.mode=jit (the pack still spans the devices)."
            )


def _check_processes(config: ml_collections.ConfigDict) -> None:
    """Each process feeds the same number of examples of every batch."""
    processes = jax.process_count()
    for field in ("data.batch_size", "data.eval_batch_size"):
        size = config.data[field.split(".")[1]]
        if size % processes:
            raise UserInputError(
                f"config.{field}={size} is not divisible by the {processes} processes; "
                f"use a multiple of {processes}."
            )


def with_learning_rate_scale(plan: Setup, scale: float) -> Setup:
    """The same plan with every `learning_rate` in the config multiplied by `scale`.

    Used after a rollback from non-finite updates. The task is rebuilt from the scaled config
    (a GAN scales both of its optimizers); the state's structure and shapes do not change.
    """
    if scale == 1.0:
        return plan
    config = config_lib.scale_learning_rates(plan.config, scale)
    task = build_task(config, plan.dataset, batch_axis_name=_batch_axis_name(config))
    # A state's static fields (e.g. TrainState.tx, the optimizer) live in its tree structure:
    # take the new task's, keep the leaves' shapes and shardings.
    shapes = jax.eval_shape(unboxed_init(task), jax.random.PRNGKey(0), plan.example_batch())
    abstract_state = jax.tree.unflatten(
        jax.tree.structure(shapes), jax.tree.leaves(plan.abstract_state)
    )
    return dataclasses.replace(plan, config=config, task=task, abstract_state=abstract_state)


def adopt_structure(plan: Setup, state: Any) -> Any:
    """`state`'s arrays under the plan's tree structure (its static fields, e.g. the optimizer)."""
    return jax.tree.unflatten(jax.tree.structure(plan.abstract_state), jax.tree.leaves(state))


# XLA's optimising CPU backend spends seconds on the threefry random bits of parameter
# initialisation: 4.2 s to compile one normal draw of 1,152 numbers here, 0.15 s without the
# optimisations, and 6 s of every quick CNN run's 19 s. A program that runs once needs none of
# it. (The values then differ from an optimised build's in the last bit of a few percent of them.)
_RUN_ONCE_CPU_OPTIONS = {"xla_backend_optimization_level": 0}


def init_state(plan: Setup) -> Any:
    """The task's fresh state, placed as the plan's shardings say."""
    init = jax.jit(unboxed_init(plan.task), out_shardings=plan.state_sharding)
    args = (jax.random.PRNGKey(plan.config.seed), plan.example_batch())
    options = _RUN_ONCE_CPU_OPTIONS if plan.on_cpu else None
    return init.lower(*args).compile(compiler_options=options)(*args)

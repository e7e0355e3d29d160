"""The checks run on a resolved config before anything touches the workdir (`validate`).

Models, data and tasks check their own fields where they are built; these are the engine's.
"""

import math
from typing import Any

import ml_collections

from jaxdl.errors import UserInputError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine", "step")
MESH_STRATEGIES = ("data_parallel", "fsdp")
MESH_MODES = ("jit", "shard_map")
MESH_AXES = ("data", "fsdp", "tensor")


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise UserInputError(f"config.{field}: {message}")


_REQUIRED = object()


def _get(config: ml_collections.ConfigDict, field: str, default: Any = _REQUIRED) -> Any:
    """The field's value; `default` for a field missing (configs saved before it existed)."""
    value = config
    for part in field.split("."):
        if default is not _REQUIRED and part not in value:
            return default
        value = value[part]
    return value


def _check_choice(
    config: ml_collections.ConfigDict,
    field: str,
    choices: tuple[str, ...],
    default: Any = _REQUIRED,
) -> Any:
    """The field's value, checked to be one of `choices`."""
    value = _get(config, field, default)
    _require(value in choices, field, f"got {value!r}; choose one of {', '.join(choices)}.")
    return value


# Float fields that must be finite: inf passes range checks such as `> 0`, and nan in an optimizer
# hyperparameter trains without an error, turning every parameter into nan.
FINITE_FIELDS = (
    "optimizer.learning_rate",
    "optimizer.weight_decay",
    "optimizer.grad_clip_norm",
    "optimizer.eps",
    "optimizer.b1",
    "optimizer.b2",
    "optimizer.momentum",
    "data.validation_fraction",
    "schedule.end_factor",
    "schedule.decay_factor",
)


def _check_finite(config: ml_collections.ConfigDict, field: str) -> None:
    value = _get(config, field)
    _require(_is_number(value), field, f"got {value!r}; it must be a finite number.")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the fields the engine owns; models, data and tasks check their own on construction."""
    for field in FINITE_FIELDS:
        _check_finite(config, field)
    _check_choice(config, "optimizer.name", OPTIMIZERS)
    _check_choice(config, "schedule.name", SCHEDULES)
    _check_choice(config, "mesh.strategy", MESH_STRATEGIES)
    _check_choice(config, "train.monitor_mode", ("max", "min"))
    _require(config.optimizer.learning_rate > 0, "optimizer.learning_rate", "must be > 0.")
    _require(config.optimizer.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0.")
    _require(config.optimizer.grad_clip_norm >= 0, "optimizer.grad_clip_norm", "must be >= 0.")
    for field in ("num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
        value = config.train[field]
        _require(value > 0, f"train.{field}", f"got {value!r}; it must be a positive integer.")
    _require(config.train.patience >= 0, "train.patience", "must be >= 0 (0 disables it).")
    _require(
        0 <= config.train.monitor_from < config.train.num_steps,
        "train.monitor_from",
        "must be a step >= 0 and below train.num_steps.",
    )
    _require(config.data.batch_size > 0, "data.batch_size", "must be a positive integer.")
    _require(config.data.eval_batch_size > 0, "data.eval_batch_size", "must be a positive integer.")
    _require(
        0 <= config.schedule.warmup_steps < config.train.num_steps,
        "schedule.warmup_steps",
        "must be >= 0 and smaller than train.num_steps.",
    )
    _require(
        all(0 < b < 1 for b in config.schedule.boundaries),
        "schedule.boundaries",
        "must be fractions of train.num_steps strictly between 0 and 1.",
    )
    validate_reliability(config)
    validate_scale_out(config)
    validate_compression(config)
    validate_adversarial(config)
    validate_imbalance(config)


def validate_compression(config: ml_collections.ConfigDict) -> None:
    """The distillation weights, and compression only where it applies (quant.* and prune.*
    are checked in full where the model and the optimizer are built)."""
    for field, used in (
        ("quant.scheme", bool(config.quant.scheme)),
        ("distill.teacher", bool(config.distill.teacher)),
        ("prune.sparsity", config.prune.sparsity != 0),
    ):
        _require(
            not used or config.task.name == "classification",
            field,
            f"compression is for classifiers (task.name='classification'), not "
            f"{config.task.name!r}; leave config.{field} at its default.",
        )
    distill = config.distill
    _require(
        math.isfinite(distill.temperature) and distill.temperature > 0,
        "distill.temperature",
        "must be a finite number > 0 (4 is common; 1 leaves the teacher's outputs as they are).",
    )
    _require(
        0 <= distill.alpha <= 1,
        "distill.alpha",
        "must be in [0, 1]: the weight of the teacher's term (1 - alpha goes to the labels).",
    )


# Here, not in tasks/adversarial.py: the CLI checks `jaxdl attack`'s flags without importing JAX.
ATTACK_METHODS = ("fgsm", "pgd")
ADVERSARIAL_METHODS = ("fgsm", "pgd", "trades")
ADVERSARIAL_NORMS = ("linf", "l2")


def validate_adversarial(config: ml_collections.ConfigDict) -> None:
    """Adversarial training (task.adversarial*, tasks/adversarial.py): classifiers only."""
    task = config.task
    method = task.get("adversarial", "")
    if not method:
        return
    _require(
        method in ADVERSARIAL_METHODS,
        "task.adversarial",
        f"got {method!r}; choose one of {', '.join(ADVERSARIAL_METHODS)} ('' turns it off).",
    )
    _require(
        task.name == "classification",
        "task.adversarial",
        f"adversarial training is for classifiers (task.name='classification'), not "
        f"{task.name!r}; leave config.task.adversarial at ''.",
    )
    _check_choice(config, "task.adversarial_norm", ADVERSARIAL_NORMS)
    for field in ("adversarial_eps", "adversarial_step_size", "trades_beta"):
        _check_finite(config, f"task.{field}")
    _require(
        task.adversarial_eps > 0,
        "task.adversarial_eps",
        f"got {task.adversarial_eps!r}; the attack's radius must be > 0 (e.g. 0.1 on [0, 1] pixels).",
    )
    steps = task.adversarial_steps
    _require(
        isinstance(steps, int) and steps >= 1,
        "task.adversarial_steps",
        f"got {steps!r}; PGD needs at least 1 step (7-10 is common).",
    )
    _require(
        task.adversarial_step_size >= 0,
        "task.adversarial_step_size",
        "must be >= 0 (0 takes 2.5 * eps / steps).",
    )
    _require(task.trades_beta >= 0, "task.trades_beta", "must be >= 0 (6 is TRADES' default).")


NONFINITE_POLICIES = ("rollback", "skip", "stop", "off")


def validate_reliability(config: ml_collections.ConfigDict) -> None:
    """The checkpoint-interval and non-finite fields (train.*), and debug_nans."""
    train = config.train
    _check_choice(config, "train.nonfinite", NONFINITE_POLICIES)
    minutes = train.checkpoint_every_minutes
    _require(
        math.isfinite(minutes) and minutes >= 0,
        "train.checkpoint_every_minutes",
        "must be a finite number >= 0 (0 turns it off).",
    )
    _require(
        train.nonfinite_patience > 0, "train.nonfinite_patience", "must be a positive integer."
    )
    factor = train.nonfinite_lr_factor
    _require(
        math.isfinite(factor) and 0 < factor < 1,
        "train.nonfinite_lr_factor",
        "must be strictly between 0 and 1.",
    )
    _require(train.nonfinite_max_rollbacks >= 0, "train.nonfinite_max_rollbacks", "must be >= 0.")


def validate_scale_out(config: ml_collections.ConfigDict) -> None:
    """The mesh fields, gradient accumulation and loss scaling (the device count is checked
    where the mesh is built, engine/sharding.py)."""
    mesh = config.mesh
    _check_choice(config, "mesh.mode", MESH_MODES)
    _require(mesh.num_devices >= 0, "mesh.num_devices", "must be >= 0 (0 uses all).")
    for axis in MESH_AXES:
        size = mesh[axis]
        _require(
            isinstance(size, int) and (size >= 1 or size == -1),
            f"mesh.{axis}",
            f"got {size!r}; it must be a positive integer or -1 (the remaining devices).",
        )
    rest = [axis for axis in MESH_AXES if mesh[axis] == -1]
    _require(
        len(rest) <= 1,
        f"mesh.{rest[-1] if rest else 'data'}",
        f"only one axis may be -1; got -1 for {', '.join(rest)}.",
    )
    if mesh.strategy == "fsdp":
        _require(
            (mesh.data, mesh.fsdp, mesh.tensor) == (-1, 1, 1),
            "mesh.strategy",
            "'fsdp' is the pre-0.3 spelling of mesh.data=1 mesh.fsdp=-1; drop mesh.strategy "
            "when setting mesh.data/fsdp/tensor.",
        )
    accum = config.train.grad_accum_steps
    _require(
        isinstance(accum, int) and accum >= 1,
        "train.grad_accum_steps",
        f"got {accum!r}; it must be a positive integer (1 = no accumulation).",
    )
    scale = config.train.loss_scale_init
    _require(
        isinstance(scale, int | float) and math.isfinite(scale) and scale >= 1,
        "train.loss_scale_init",
        f"got {scale!r}; it must be a finite number >= 1.",
    )
    interval = config.train.loss_scale_growth_interval
    _require(
        isinstance(interval, int) and interval >= 1,
        "train.loss_scale_growth_interval",
        f"got {interval!r}; it must be a positive integer.",
    )


# The one list of each (tasks/class_balance.py and data/imbalance.py use these).
CLASS_WEIGHTINGS = ("none", "inverse", "effective")
SAMPLERS = ("uniform", "balanced")


def validate_imbalance(config: ml_collections.ConfigDict) -> None:
    """Imbalanced-data fields (README "Imbalanced data"); .get: configs built before 0.6.0."""
    task, data = config.task, config.data
    weighting = _check_choice(config, "task.class_weighting", CLASS_WEIGHTINGS, "none")
    beta = task.get("class_weighting_beta", 0.999)
    _require(
        _is_number(beta) and 0 < beta < 1,
        "task.class_weighting_beta",
        f"got {beta!r}; it must be a number strictly between 0 and 1, e.g. 0.999.",
    )
    gamma = task.get("focal_gamma", 0.0)
    _require(
        _is_number(gamma) and gamma >= 0,
        "task.focal_gamma",
        f"got {gamma!r}; it must be a finite number >= 0 (0 turns focal loss off; 2 is usual).",
    )
    _check_choice(config, "data.sampler", SAMPLERS, "uniform")
    ratio = data.get("imbalance_ratio", 0.0)
    _require(
        _is_number(ratio) and (ratio == 0 or ratio >= 1),
        "data.imbalance_ratio",
        f"got {ratio!r}; it must be >= 1 (e.g. 50 for 50:1), or 0 or 1 for no long tail.",
    )
    seed = data.get("subset_seed", -1)
    _require(
        isinstance(seed, int) and not isinstance(seed, bool) and seed >= -1,
        "data.subset_seed",
        f"got {seed!r}; it must be an integer >= 0, or -1 to keep the first examples of each class.",
    )
    if task.name != "classification":
        for field, used in (
            ("task.class_weighting", weighting != "none"),
            ("task.focal_gamma", gamma != 0),
        ):
            _require(
                not used,
                field,
                f"applies to task.name='classification' only, not {task.name!r}; leave it unset.",
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

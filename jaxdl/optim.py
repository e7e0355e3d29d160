"""Optax optimizers and learning-rate schedules from config.

Tasks call `make_optimizer`; a task with two networks (a GAN) calls it twice with two sub-configs.

Parameter groups (`optimizer.frozen`, `optimizer.lr_multipliers`) split the parameters by path:
'head' is every parameter of a module whose kernel carries the logical axis name 'classes' (the
classifier), 'backbone' every other one, and anything else is a regular expression matched
whole against the '/'-joined path (e.g. 'encoder/block_0/.*'). Frozen groups get zero updates
(weight decay included); a multiplier group gets the same optimizer with its learning-rate
schedule scaled. With neither field set the optimizer is exactly the one without groups.
"""

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import optax
from flax.core import meta

from jaxdl.errors import UserInputError


def make_schedule(
    schedule: ml_collections.ConfigDict, peak_lr: float, num_steps: int
) -> optax.Schedule:
    """Learning rate as a function of the step: constant, warmup + cosine, or warmup + step decay."""
    warmup = int(schedule.warmup_steps)
    if schedule.name == "constant":
        main = optax.constant_schedule(peak_lr)
    elif schedule.name == "warmup_cosine":
        main = optax.cosine_decay_schedule(
            peak_lr, decay_steps=max(num_steps - warmup, 1), alpha=schedule.end_factor
        )
    elif schedule.name == "step":
        # Boundaries are fractions of the whole run so that a quick variant keeps the same shape.
        boundaries = {
            max(int(b * num_steps) - warmup, 1): schedule.decay_factor for b in schedule.boundaries
        }
        main = optax.piecewise_constant_schedule(peak_lr, boundaries)
    else:
        raise UserInputError(
            f"config.schedule.name: unknown schedule {schedule.name!r}; "
            "choose constant, warmup_cosine or step."
        )
    if warmup == 0:
        return main
    ramp = optax.linear_schedule(0.0, peak_lr, warmup)
    return optax.join_schedules([ramp, main], boundaries=[warmup])


def _decay_mask(params):
    # Weight decay on biases and normalisation scales hurts more than it regularises.
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(
    optimizer: ml_collections.ConfigDict,
    schedule: ml_collections.ConfigDict,
    num_steps: int,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer and its schedule (returned so steps can log the learning rate)."""
    lr = make_schedule(schedule, optimizer.learning_rate, num_steps)
    clip = (
        [optax.clip_by_global_norm(optimizer.grad_clip_norm)]
        if optimizer.grad_clip_norm > 0
        else []
    )
    groups = parse_groups(optimizer)
    if not groups:
        return optax.chain(*clip, *_update_rule(optimizer, lr)), lr
    # Clipping sees the gradient of every parameter; each group then gets its own rule.
    rules: dict[str, optax.GradientTransformation] = {
        DEFAULT_LABEL: optax.chain(*_update_rule(optimizer, lr))
    }
    for group in groups:
        if group.frozen:
            rules[FROZEN_LABEL] = optax.set_to_zero()
        else:
            scaled = _scaled_schedule(lr, group.factor)
            rules[group.label] = optax.chain(*_update_rule(optimizer, scaled))
    return optax.chain(*clip, optax.multi_transform(rules, ParamGroups(groups))), lr


def _scaled_schedule(lr: optax.Schedule, factor: float) -> optax.Schedule:
    return lambda count: factor * lr(count)


def _update_rule(
    optimizer: ml_collections.ConfigDict, lr: optax.Schedule
) -> list[optax.GradientTransformation]:
    """Weight decay (when coupled) and the optimizer itself, at learning-rate schedule `lr`."""
    mask = None if optimizer.decay_all_params else _decay_mask
    name = optimizer.name
    if name == "sgd":
        base = optax.sgd(lr)
    elif name in ("momentum", "nesterov"):
        base = optax.sgd(lr, momentum=optimizer.momentum, nesterov=name == "nesterov")
    elif name == "adam":
        base = optax.adam(lr, b1=optimizer.b1, b2=optimizer.b2, eps=optimizer.eps)
    elif name == "adamw":
        base = optax.adamw(
            lr,
            b1=optimizer.b1,
            b2=optimizer.b2,
            eps=optimizer.eps,
            weight_decay=optimizer.weight_decay,
            mask=mask,
        )
    else:
        raise UserInputError(
            f"config.optimizer.name: unknown optimizer {name!r}; "
            "choose sgd, momentum, nesterov, adam or adamw."
        )
    parts = []
    if name != "adamw" and optimizer.weight_decay > 0:
        # Coupled (L2-style) decay for optimizers without a decoupled variant.
        parts.append(optax.add_decayed_weights(optimizer.weight_decay, mask=mask))
    parts.append(base)
    return parts


# Parameter groups. Labels are plain names (they become keys in checkpoints): the parameters of
# no group train as usual, frozen ones share one label, multiplier groups are numbered.
HEAD, BACKBONE = "head", "backbone"
DEFAULT_LABEL, FROZEN_LABEL = "default", "frozen"
HEAD_AXIS = "classes"  # The logical name of a classifier's output axis (models/layers.py).
GROUP_HELP = (
    "a group is 'head' (the classifier layer), 'backbone' (every other parameter) or a regular "
    "expression over parameter paths such as 'encoder/.*'"
)


@dataclasses.dataclass(frozen=True)
class Group:
    """One entry of optimizer.frozen or optimizer.lr_multipliers."""

    field: str  # 'optimizer.frozen' or 'optimizer.lr_multipliers'.
    name: str  # 'head', 'backbone' or a regular expression.
    factor: float  # Learning-rate multiplier; 0 for a frozen group.
    label: str

    @property
    def frozen(self) -> bool:
        return self.label == FROZEN_LABEL

    def describe(self) -> str:
        return f"{self.name!r} ({self.field})"


def _entries(optimizer: ml_collections.ConfigDict, field: str) -> list[str]:
    value = optimizer.get(field, ())
    if isinstance(value, str):  # --config.optimizer.frozen=backbone
        value = (value,) if value else ()
    if not isinstance(value, Sequence) or not all(isinstance(v, str) and v for v in value):
        raise UserInputError(
            f"config.optimizer.{field}={value!r} must be a tuple of non-empty strings; {GROUP_HELP}."
        )
    return list(value)


def parse_groups(optimizer: ml_collections.ConfigDict) -> list[Group]:
    """optimizer.frozen and optimizer.lr_multipliers, checked; [] when both are empty."""
    groups = [
        Group("optimizer.frozen", name, 0.0, FROZEN_LABEL) for name in _entries(optimizer, "frozen")
    ]
    for index, entry in enumerate(_entries(optimizer, "lr_multipliers")):
        name, eq, factor_text = entry.rpartition("=")
        try:
            factor = float(factor_text)
        except ValueError:
            factor = math.nan
        if not eq or not name or not math.isfinite(factor) or factor < 0:
            raise UserInputError(
                f"config.optimizer.lr_multipliers: {entry!r} is not 'GROUP=FACTOR' with a finite "
                f"factor >= 0, e.g. 'backbone=0.1'; {GROUP_HELP}."
            )
        groups.append(Group("optimizer.lr_multipliers", name, factor, f"lr_{index}"))
    for group in groups:
        if group.name in (HEAD, BACKBONE):
            continue
        try:
            re.compile(group.name)
        except re.error as error:
            raise UserInputError(
                f"config.{group.field}: {group.name!r} is not a valid regular expression "
                f"({error}); {GROUP_HELP}."
            ) from None
    return groups


def _is_boxed(leaf: Any) -> bool:
    return isinstance(leaf, meta.Partitioned)


def _key_name(key: Any) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def param_paths(params: Any) -> tuple[list[str], list[Any], Any]:
    """('/'-joined paths, leaves, treedef) of a parameter tree; a boxed parameter is one leaf."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_boxed)
    paths = ["/".join(_key_name(key) for key in path) for path, _ in flat]
    return paths, [leaf for _, leaf in flat], treedef


class ParamGroups:
    """The label of each parameter: a function of the parameter tree, boxed or not.

    'head' needs the logical axis names, which only boxed parameters carry: optax calls this
    with the boxed parameters at `init` (Task.init_state) and with unboxed gradients at
    `update`, so the head found at `init` is remembered.
    """

    def __init__(self, groups: list[Group]):
        self.groups = groups
        self.head_modules: tuple[str, ...] | None = None

    def __call__(self, params: Any) -> Any:
        paths, leaves, treedef = param_paths(params)
        if any(_is_boxed(leaf) for leaf in leaves):
            self.head_modules = tuple(
                path.rpartition("/")[0]
                for path, leaf in zip(paths, leaves, strict=True)
                if _is_boxed(leaf)
                and path.rpartition("/")[2] == "kernel"
                and HEAD_AXIS in (leaf.names or ())
            )
        labels = {path: DEFAULT_LABEL for path in paths}
        owner: dict[str, Group] = {}
        for group in self.groups:
            matched = self._members(group, paths)
            if not matched:
                tops = sorted({path.split("/")[0] for path in paths})
                raise UserInputError(
                    f"config.{group.field}: group {group.name!r} matches no parameter; the "
                    f"model's top-level modules are {', '.join(tops)}; {GROUP_HELP} (matched "
                    f"whole, e.g. '{tops[0]}/.*')."
                )
            for path in matched:
                if path in owner:
                    raise UserInputError(
                        f"config.{group.field}: parameter {path!r} is in two groups, "
                        f"{owner[path].describe()} and {group.describe()}; a parameter may be "
                        "in one group only."
                    )
                owner[path] = group
                labels[path] = group.label
        return jax.tree_util.tree_unflatten(treedef, [labels[path] for path in paths])

    def _members(self, group: Group, paths: list[str]) -> list[str]:
        if group.name in (HEAD, BACKBONE):
            if self.head_modules is None:
                raise ValueError(
                    f"parameter group {group.name!r} needs the logical axis names of the "
                    "parameters: initialise the optimizer with the boxed parameters "
                    "(model.init's, as Task.init_state does) before updating."
                )
            if not self.head_modules:
                raise UserInputError(
                    f"config.{group.field}: group {group.name!r} needs a classifier layer (a "
                    f"kernel with logical axis {HEAD_AXIS!r}), and this model has none; "
                    "use a regular expression over parameter paths instead."
                )
            is_head = [
                any(path.startswith(module + "/") for module in self.head_modules) for path in paths
            ]
            want = group.name == HEAD
            return [path for path, head in zip(paths, is_head, strict=True) if head == want]
        pattern = re.compile(group.name)
        return [path for path in paths if pattern.fullmatch(path)]

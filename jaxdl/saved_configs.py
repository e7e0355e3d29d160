"""Configs saved by earlier runs (config.json): which fields were added in which version, and
how a saved config is completed and compared with today's (engine/workdir.py).

A run saved before a field existed must load with every field the engine reads, and compare
equal to the same experiment today; a field's default stands in for it.
"""

from typing import Any

import ml_collections

from jaxdl.config import LAYOUT_FIELDS, base_config, flatten

# Fields that change how a run looks or how often it is saved, not what it computes: a resume
# may change them (e.g. turn on debug_nans to find the operation that made a NaN).
PRESENTATION_FIELDS = frozenset(
    {"train.progress_bar", "train.checkpoint_every_minutes", "debug_nans"}
)


# Base fields added after jaxdl 0.1.0, by the version that added them. A run saved before has
# none of them, and behaves as their defaults do.
ADDED_FIELDS = {
    "0.2.0": (
        "train.checkpoint_every_minutes",
        "train.nonfinite",
        "train.nonfinite_patience",
        "train.nonfinite_lr_factor",
        "train.nonfinite_max_rollbacks",
        "debug_nans",
    ),
    "0.3.0": (
        "mesh.data",
        "mesh.fsdp",
        "mesh.tensor",
        "mesh.mode",
        "train.grad_accum_steps",
        "train.loss_scale_init",
        "train.loss_scale_growth_interval",
    ),
    "0.4.0": (
        "init_from",
        "data.crop_padding",
        "data.resized_crop_scale",
        "data.resized_crop_ratio",
        "data.color_jitter",
        "data.mixup_alpha",
        "data.cutmix_alpha",
        "data.randaugment_ops",
        "data.randaugment_magnitude",
        "data.classes",
        "data.train_examples_per_class",
        "data.image_size",
        "optimizer.frozen",
        "optimizer.lr_multipliers",
    ),
    "0.5.0": (
        "quant.scheme",
        "quant.mode",
        "distill.teacher",
        "distill.temperature",
        "distill.alpha",
        "prune.sparsity",
        "prune.scope",
        "prune.structure",
        "prune.begin",
        "prune.end",
        "prune.every",
        "train.monitor_from",
    ),
    "0.6.0": (
        "task.adversarial",
        "task.adversarial_eps",
        "task.adversarial_norm",
        "task.adversarial_steps",
        "task.adversarial_step_size",
        "task.trades_beta",
        "task.class_weighting",
        "task.class_weighting_beta",
        "task.focal_gamma",
        "data.sampler",
        "data.imbalance_ratio",
        "data.subset_seed",
    ),
}


def with_new_fields(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved flattened config plus the fields added since it was written, at their defaults.

    A run saved by an earlier jaxdl then compares equal to the same experiment today, and its
    config.json loads with every field the engine reads.
    """
    defaults = flatten(base_config())
    added = {key: defaults[key] for keys in ADDED_FIELDS.values() for key in keys}
    return {**added, **saved}


def unflatten(flat: dict[str, Any]) -> ml_collections.ConfigDict:
    """The inverse of `flatten` (sequences stay lists, as config.json stores them)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return ml_collections.ConfigDict(nested)


def diff(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable lines for each field that differs between two flattened configs."""
    lines = []
    # Fields added since the run was saved take their defaults, where this config has them too
    # (graph experiments replace config.task, so they lack the classifier's task fields).
    completed = with_new_fields(saved)
    saved = {key: value for key, value in completed.items() if key in saved or key in current}
    for key in sorted((set(saved) | set(current)) - PRESENTATION_FIELDS - LAYOUT_FIELDS):
        old, new = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if old != new:
            lines.append(f"  {key}: {old!r} -> {new!r}")
    return lines

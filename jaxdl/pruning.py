"""Magnitude pruning (`config.prune`) as an optax transformation around the optimizer.

The masks live in the optimizer state, so they are part of the train state: checkpointed,
restored on resume, sharded like the parameters they cover. After every update the weights are
multiplied by their masks, so a pruned weight stays exactly zero whatever the optimizer (weight
decay, momentum) would do to it. Between `prune.begin` and `prune.end` (fractions of
train.num_steps) the masks are recomputed every `prune.every` steps from the weights' magnitudes,
at the sparsity of Zhu & Gupta's (2017) polynomial schedule:
s(t) = sparsity * (1 - (1 - (t - t0) / (t1 - t0))^3), reaching the target at t1 and holding it.
A pruned weight is zero, the smallest magnitude there is, so it stays pruned.

Prunable weights are the kernels and embeddings (arrays of two or more dimensions); biases and
normalisation parameters are left dense. `prune.scope='global'` ranks all prunable weights
together (layers end up with different sparsities), 'layer' prunes each array to the target.
With `prune.structure='units'` whole neurons and channels go instead, the target fraction of
each hidden layer's units (by the L2 norm of their incoming weights), with their bias or batch
norm shift: a pruned unit outputs exactly zero, and `jaxdl shrink` then removes it for real.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxdl.errors import UserInputError
from jaxdl.models.units import UnitLayer
from jaxdl.optim import param_paths

SCOPES = ("global", "layer")
STRUCTURES = ("weights", "units")


class PruneState(NamedTuple):
    inner: Any  # The wrapped optimizer's state.
    masks: Any  # Like the params: True where a weight is kept.
    count: jax.Array


def check(prune: ml_collections.ConfigDict) -> None:
    def require(ok: bool, field: str, message: str) -> None:
        if not ok:
            raise UserInputError(f"config.prune.{field}={prune[field]!r}: {message}")

    require(0 <= prune.sparsity < 1, "sparsity", "must be in [0, 1) (0 turns pruning off).")
    require(prune.scope in SCOPES, "scope", f"choose one of {', '.join(SCOPES)}.")
    require(
        prune.structure in STRUCTURES,
        "structure",
        f"choose one of {', '.join(STRUCTURES)} (single weights, or whole neurons and channels).",
    )
    require(prune.every >= 1, "every", "must be a positive number of steps.")
    require(
        0 <= prune.begin < prune.end <= 1,
        "end" if 0 <= prune.begin < 1 else "begin",
        "prune.begin and prune.end are fractions of train.num_steps with 0 <= begin < end <= 1.",
    )


def sparsity_schedule(prune: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
    """The target sparsity at each step (the polynomial ramp of the module doc)."""
    begin, end = round(prune.begin * num_steps), max(round(prune.end * num_steps), 1)
    end = max(end, begin + 1)

    def schedule(step: jax.Array) -> jax.Array:
        progress = jnp.clip((step - begin) / (end - begin), 0.0, 1.0)
        return prune.sparsity * (1.0 - (1.0 - progress) ** 3)

    schedule.begin, schedule.end = begin, end  # For the update times below.
    return schedule


def prunable(leaf: Any) -> bool:
    return np.ndim(leaf) >= 2


def magnitude_masks(params: Any, sparsity: jax.Array, scope: str) -> Any:
    """Masks keeping the largest-magnitude prunable weights, a fraction `sparsity` pruned (of
    all prunable weights together, or of each array)."""
    leaves, treedef = jax.tree.flatten(params)
    magnitudes = [jnp.abs(leaf).ravel() for leaf in leaves if prunable(leaf)]

    def threshold(values: jax.Array) -> jax.Array:
        # Pruned: the floor(sparsity * n) smallest; a weight equal to the threshold is kept.
        count = jnp.floor(sparsity * values.size).astype(jnp.int32)
        ranked = jnp.sort(values)
        return jnp.where(count > 0, ranked[jnp.maximum(count - 1, 0)], -1.0)

    shared = threshold(jnp.concatenate(magnitudes)) if scope == "global" and magnitudes else None
    masks = []
    for leaf in leaves:
        if not prunable(leaf):
            masks.append(jnp.ones(leaf.shape, bool))
            continue
        cut = shared if shared is not None else threshold(jnp.abs(leaf).ravel())
        masks.append(jnp.abs(leaf) > cut)
    return jax.tree.unflatten(treedef, masks)


def unit_masks(params: Any, layers: list[UnitLayer], sparsity: jax.Array) -> Any:
    """Masks pruning, in each unit layer, the fraction `sparsity` of its units whose incoming
    weights have the smallest L2 norm: everything that produces a pruned unit is zeroed."""
    paths, leaves, treedef = param_paths(params)
    index = {path: i for i, path in enumerate(paths)}
    masks = [jnp.ones(jnp.shape(leaf), bool) for leaf in leaves]
    for layer in layers:
        kernel = leaves[index[layer.kernel]]
        norms = jnp.sqrt(jnp.sum(jnp.square(kernel), axis=tuple(range(kernel.ndim - 1))))
        # At least one unit stays, so the layer still passes something on.
        count = jnp.minimum(jnp.floor(sparsity * layer.width), layer.width - 1).astype(jnp.int32)
        ranked = jnp.sort(norms)
        keep = norms > jnp.where(count > 0, ranked[jnp.maximum(count - 1, 0)], -1.0)
        for path, axis in layer.produced:
            shape = [1] * jnp.ndim(leaves[index[path]])
            shape[axis] = layer.width
            masks[index[path]] = jnp.broadcast_to(keep.reshape(shape), masks[index[path]].shape)
    return jax.tree_util.tree_unflatten(treedef, masks)


def magnitude_pruning(
    inner: optax.GradientTransformation,
    prune: ml_collections.ConfigDict,
    num_steps: int,
    layers: list[UnitLayer] | None = None,
) -> optax.GradientTransformation:
    """`inner`, then the masks of the module doc applied to the updated weights: of single
    weights, or of whole units of `layers` (prune.structure='units')."""
    schedule = sparsity_schedule(prune, num_steps)
    every = prune.every

    def masks_for(params: Any, sparsity: jax.Array) -> Any:
        if layers is not None:
            return unit_masks(params, layers, sparsity)
        return magnitude_masks(params, sparsity, prune.scope)

    def init(params: Any) -> PruneState:
        masks = jax.tree.map(lambda p: jnp.ones(jnp.shape(p), bool), params)
        return PruneState(inner.init(params), masks, jnp.zeros((), jnp.int32))

    def update(updates: Any, state: PruneState, params: Any = None) -> tuple[Any, PruneState]:
        if params is None:
            raise ValueError("magnitude_pruning needs the params in update().")
        updates, inner_state = inner.update(updates, state.inner, params)
        new_params = optax.apply_updates(params, updates)
        # `count` is the number of updates so far: this update makes step count + 1.
        step = state.count + 1
        due = (step >= schedule.begin) & (step <= schedule.end)
        due &= ((step - schedule.begin) % every == 0) | (step == schedule.end)
        masks = jax.lax.cond(
            due,
            lambda: masks_for(new_params, schedule(step)),
            lambda: state.masks,
        )
        updates = jax.tree.map(
            lambda old, new, mask: jnp.where(mask, new, 0).astype(old.dtype) - old,
            params,
            new_params,
            masks,
        )
        return updates, PruneState(inner_state, masks, step)

    return optax.GradientTransformation(init, update)


def wrap(
    tx: optax.GradientTransformation, config: ml_collections.ConfigDict, model: Any
) -> optax.GradientTransformation:
    """`tx` with the pruning of `config.prune`, or `tx` itself when prune.sparsity is 0. Units
    are the model's own (`model.unit_layers()`, models/units.py)."""
    check(config.prune)
    if config.prune.sparsity == 0:
        return tx
    layers = None
    if config.prune.structure == "units":
        if not hasattr(model, "unit_layers"):
            raise UserInputError(
                f"config.prune.structure=units: model.name={config.model.name!r} does not "
                "declare its units; 'mlp' and 'cnn' do. Use prune.structure=weights."
            )
        layers = model.unit_layers()
    return magnitude_pruning(tx, config.prune, config.train.num_steps, layers)


def monitor_from(config: ml_collections.ConfigDict) -> int:
    """The first step whose evaluation may become the best checkpoint: `train.monitor_from`, and
    for a pruned run not before its masks reach the target sparsity (so the best checkpoint,
    and the test metrics of summary.json, are of the pruned model)."""
    first = config.train.monitor_from
    if config.prune.sparsity > 0:
        first = max(first, sparsity_schedule(config.prune, config.train.num_steps).end)
    return first


def sparsity_report(params: Any) -> dict[str, Any]:
    """Achieved sparsity: overall (of the prunable weights) and per prunable array, by path."""
    paths, leaves, _ = param_paths(jax.device_get(params))
    layers = {}
    zeros = total = 0
    for path, leaf in zip(paths, leaves, strict=True):
        leaf = np.asarray(getattr(leaf, "value", leaf))
        if not prunable(leaf):
            continue
        count = int(leaf.size - np.count_nonzero(leaf))
        layers[path] = round(count / leaf.size, 4)
        zeros, total = zeros + count, total + leaf.size
    return {"overall": round(zeros / max(total, 1), 4), "prunable_weights": total, "layers": layers}


def summary_entry(config: ml_collections.ConfigDict, params: Any) -> dict[str, Any]:
    """{'sparsity': the report} for summary.json of a pruned run, else {}."""
    if config.get("prune", {}).get("sparsity", 0) == 0:
        return {}
    return {"sparsity": {"target": config.prune.sparsity, **sparsity_report(params)}}

"""`jaxdl shrink --workdir W --out O`: a run pruned with `prune.structure=units` rebuilt as the
smaller model it is, its pruned neurons and channels removed.

A pruned unit outputs exactly zero (its kernel column and its bias or batch-norm shift are
zero), so dropping it from the arrays that produce it, from its batch-norm statistics and from
the next layer's inputs leaves the function unchanged. O is a new run directory like one
`jaxdl quantize` writes: config.json (the model with its new widths: `hidden_sizes`, or
`conv_features` with one width per convolution), shrink.json (the units kept per layer),
params.npz, summary.json with the compression report of the source and the shrunk model, and
compression.png. eval, quantize, export and compare read it.
"""

import copy
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxdl import config as config_lib
from jaxdl.compression import inference
from jaxdl.compression.quantize_run import PLOT_FILE, check_out, write_derived_run
from jaxdl.engine import workdir
from jaxdl.engine.setup import setup
from jaxdl.errors import UserInputError
from jaxdl.optim import param_paths


def _by_path(tree: Any) -> dict[str, np.ndarray]:
    paths, leaves, _ = param_paths(jax.device_get(tree))
    return {path: np.asarray(leaf) for path, leaf in zip(paths, leaves, strict=True)}


def live_units(arrays: dict[str, np.ndarray], layer: Any) -> np.ndarray:
    """Indices of the layer's units with anything non-zero producing them (at least one)."""
    alive = np.zeros(layer.width, bool)
    for path, axis in layer.produced:
        values = np.moveaxis(arrays[path], axis, -1).reshape(-1, layer.width)
        alive |= np.any(values != 0, axis=0)
    return np.flatnonzero(alive) if alive.any() else np.array([0])


def shrink_run(
    run_dir: Path, out: Path, checkpoint: str = "best", latency_repeats: int = 20
) -> dict[str, Any]:
    """The units-pruned classifier in `run_dir` without its pruned units, as the new run
    `out`; returns its summary."""
    check_out(out, run_dir)
    if inference.is_derived_run(run_dir):
        raise UserInputError(f"{run_dir} was written by quantize or shrink; shrink its source.")
    source = inference.load(run_dir, checkpoint)
    model = source.plan.task.model
    if not hasattr(model, "unit_layers"):
        raise UserInputError(
            f"{run_dir}: model.name={source.plan.config.model.name!r} does not declare its "
            "units; shrink takes mlp and cnn runs."
        )
    params = _by_path(source.params)
    stats = _by_path({k: v for k, v in source.variables.items() if k != "params"})
    kept = {}
    for layer in model.unit_layers():
        index = live_units(params, layer)
        kept[layer.name] = [int(index.size), layer.width]
        for path, axis in (*layer.produced, *layer.consumed):
            params[path] = np.take(params[path], index, axis=axis)
        for path, axis in layer.stats:
            stats[path] = np.take(stats[path], index, axis=axis)
    config = _shrunk_config(source.plan.config, model, kept)
    plan = setup(config_lib.with_default_layout(config))
    abstract = {"params": plan.abstract_state.params, **plan.abstract_state.model_state}
    paths, leaves, treedef = param_paths(abstract)
    arrays = {**{f"params/{p}": v for p, v in params.items()}, **stats}
    for path, leaf in zip(paths, leaves, strict=True):
        if arrays[path].shape != tuple(leaf.shape):  # A unit layer declared wrongly.
            raise AssertionError(f"{path}: shrunk to {arrays[path].shape}, model {leaf.shape}")
    variables = jax.tree_util.tree_unflatten(treedef, [arrays[path] for path in paths])
    shrunk = inference.InferenceModel(
        plan, source.step, "float32 (shrunk)", plan.task.model.apply, variables
    )
    rows = [source.report(repeats=latency_repeats), shrunk.report(repeats=latency_repeats)]
    summary = {
        "status": "completed",
        "kind": "shrunk",
        "source": str(run_dir),
        "source_step": source.step,
        "units": kept,
        "final_metrics": {"test/accuracy": rows[1]["accuracy"], "test/loss": rows[1]["loss"]},
        "compression": rows,
    }
    facts = {"source": str(run_dir), "source_step": source.step, "units": kept}
    write_derived_run(
        out,
        workdir.config_to_json(config),
        summary,
        inference.SHRINK_FILE,
        facts,
        variables,
        PLOT_FILE,
    )
    return summary


def _shrunk_config(config: Any, model: Any, kept: dict[str, list[int]]) -> Any:
    """The source's config with the model's new widths, as a dense model for inference (no
    pruning, no teacher: the shrunk run is not trained further from this config)."""
    config = copy.deepcopy(config)
    with config.unlocked():
        config.model.update(model.shrunk_fields({name: k for name, (k, _) in kept.items()}))
        config.prune.sparsity = 0.0
        config.distill.teacher = ""
        config.init_from = ""
    return config

"""A classifier run, float or compressed, as an inference function with its variables.

`load(workdir)` reads either a training run (its checkpoint) or a run that `jaxdl quantize` wrote
(QUANT_FILE names the source and the scheme; PARAMS_FILE holds the quantized arrays). Whatever it
read, the result evaluates on a split with the task's own eval step, counts its parameter bytes
and times its forward pass, so the compression report compares like with like.
"""

import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxdl import config as config_lib
from jaxdl import data
from jaxdl.compression import packing
from jaxdl.engine import sharding, steps, workdir
from jaxdl.engine.evaluation import restore_checkpoint
from jaxdl.engine.setup import Setup, setup
from jaxdl.errors import UserInputError
from jaxdl.models import quantized
from jaxdl.tasks.classification import model_kwargs
from jaxdl.tasks.state import TrainState

QUANT_FILE = "quantization.json"  # A run written by `jaxdl quantize`.
SHRINK_FILE = "shrink.json"  # A run written by `jaxdl shrink`.
PARAMS_FILE = "params.npz"
LATENCY_BATCHES = (1, 256)


@dataclasses.dataclass
class InferenceModel:
    """`apply(variables, x, train=False, **kwargs)` and the variables it takes."""

    plan: Setup
    step: int
    name: str  # 'float32', or the quantization, e.g. 'int8 static'.
    apply: Callable[..., jax.Array]
    variables: dict[str, Any]

    @property
    def params(self) -> Any:
        return self.variables["params"]

    def logits(self, batch: dict[str, Any]) -> jax.Array:
        """The logits of a batch (a dict with 'input', and 'length' for sequence models)."""
        return self.apply(self.variables, batch["input"], train=False, **model_kwargs(batch))

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """The task's metrics over a whole split, as `jaxdl eval` computes them."""
        model_state = {k: v for k, v in self.variables.items() if k != "params"}
        state = TrainState(
            step=np.zeros((), np.int32),
            params=self.params,
            opt_state=None,
            model_state=model_state,
            rng=jax.random.key(0),
            apply_fn=self.apply,
            tx=None,
        )
        replicated = sharding.replicated(self.plan.mesh)
        return steps.make_eval_fn(self.plan, state_sharding=replicated)(state, split)

    def latency_ms(self, batch_size: int, repeats: int = 20) -> float:
        """Median wall time of one forward pass over `batch_size` test examples on one device,
        compilation excluded."""
        batch = test_inputs(self.plan, batch_size)
        device = jax.devices()[0]
        variables, batch = jax.device_put((self.variables, batch), device)
        forward = jax.jit(
            lambda variables, batch: self.apply(
                variables, batch["input"], train=False, **model_kwargs(batch)
            )
        )
        jax.block_until_ready(forward(variables, batch))  # Compiles.
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(forward(variables, batch))
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    def report(self, split: str = "test", repeats: int = 20) -> dict[str, Any]:
        """One row of the compression report: metrics, size and latency (the median of
        `repeats` timed passes)."""
        metrics = self.evaluate(split)
        return {
            "name": self.name,
            "accuracy": metrics["accuracy"],
            "loss": metrics["loss"],
            "param_bytes": quantized.parameter_bytes(self.params),
            "nonzero_params": quantized.nonzero_parameters(self.params),
            "latency_ms": {f"batch_{b}": self.latency_ms(b, repeats) for b in LATENCY_BATCHES},
        }


def test_inputs(plan: Setup, batch_size: int) -> dict[str, np.ndarray]:
    """The first `batch_size` test examples (repeated when the split is smaller): the model's
    inputs only."""
    rows = {}
    for batch in data.eval_batches(plan.dataset, "test", batch_size=batch_size):
        real = batch["mask"].astype(bool)
        rows = {key: value[real] for key, value in batch.items() if key in ("input", "length")}
        break
    count = len(rows["input"])
    index = np.arange(batch_size) % count
    return {key: value[index] for key, value in rows.items()}


def is_quantized_run(run_dir: Path) -> bool:
    return (run_dir / QUANT_FILE).is_file()


def is_derived_run(run_dir: Path) -> bool:
    """A run quantize or shrink wrote (parameters in PARAMS_FILE, no checkpoints)."""
    return is_quantized_run(run_dir) or (run_dir / SHRINK_FILE).is_file()


def load(run_dir: Path, checkpoint: str = "best") -> InferenceModel:
    """The classifier in `run_dir`: a training run's checkpoint `checkpoint`, or a quantized run."""
    if is_quantized_run(run_dir):
        return _load_quantized(run_dir)
    if (run_dir / SHRINK_FILE).is_file():
        return _load_shrunk(run_dir)
    config = workdir.load_config(run_dir)  # Names a missing or broken workdir in one line.
    check_classifier(config, run_dir)
    plan, step, state = restore_checkpoint(run_dir, checkpoint)
    quant = config.quant
    return InferenceModel(
        plan=plan,
        step=step,
        name=f"float32 (QAT {quant.scheme} {quant.mode})" if quant.scheme else "float32",
        apply=state.apply_fn,
        variables=jax.device_get({"params": state.params, **state.model_state}),
    )


def check_classifier(config: Any, run_dir: Path) -> None:
    if config.task.name != "classification":
        raise UserInputError(
            f"{run_dir} holds a task.name={config.task.name!r} run; this command takes "
            "classifiers (task.name='classification': MLP, CNN, ResNet, ViT, the sequence "
            "classifiers)."
        )


def quantized_example(plan: Setup) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A one-example input and model kwargs: what the quantized model is traced with."""
    batch = data.example_batch(plan.dataset, 1)
    return batch["input"], model_kwargs(batch)


def save_derived(
    run_dir: Path, variables: dict[str, Any], facts_file: str, facts: dict[str, Any]
) -> None:
    """PARAMS_FILE (each array as raw bytes, 4-bit values two to a byte) and the facts file."""
    flat, _ = jax.tree_util.tree_flatten_with_path(variables)
    arrays = {jax.tree_util.keystr(path): packing.to_bytes(np.asarray(leaf)) for path, leaf in flat}
    np.savez(run_dir / PARAMS_FILE, **arrays)
    (run_dir / facts_file).write_text(json.dumps(facts, indent=2) + "\n")


def _load_quantized(run_dir: Path) -> InferenceModel:
    config = workdir.load_config(run_dir)
    facts = json.loads((run_dir / QUANT_FILE).read_text())
    spec = quantized.QuantSpec(facts["scheme"], facts["mode"])
    plan = setup(config_lib.with_default_layout(config))
    model = plan.task.model
    float_params = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), plan.abstract_state.params
    )
    abstract = {
        "params": quantized.abstract_params(model, spec, float_params, quantized_example(plan)),
        **plan.abstract_state.model_state,
    }
    variables = _read_params(run_dir, abstract)
    return InferenceModel(
        plan=plan,
        step=int(facts["source_step"]),
        name=spec.name,
        apply=quantized.apply_fn(model, spec),
        variables=variables,
    )


def _load_shrunk(run_dir: Path) -> InferenceModel:
    """A run `jaxdl shrink` wrote: an ordinary model of smaller widths (its config.json)."""
    facts = json.loads((run_dir / SHRINK_FILE).read_text())
    plan = setup(config_lib.with_default_layout(workdir.load_config(run_dir)))
    abstract = {"params": plan.abstract_state.params, **plan.abstract_state.model_state}
    return InferenceModel(
        plan=plan,
        step=int(facts["source_step"]),
        name="float32 (shrunk)",
        apply=plan.task.model.apply,
        variables=_read_params(run_dir, abstract),
    )


def _read_params(run_dir: Path, abstract: Any) -> Any:
    """PARAMS_FILE's arrays in the structure (and shapes and dtypes) of `abstract`."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    try:
        with np.load(run_dir / PARAMS_FILE) as stored:
            leaves = [
                packing.from_bytes(stored[jax.tree_util.keystr(path)], leaf) for path, leaf in flat
            ]
    except (OSError, KeyError, ValueError) as error:
        raise UserInputError(
            f"{run_dir / PARAMS_FILE} cannot be read as this run's parameters "
            f"({type(error).__name__}: {error}); derive the run from its source again."
        ) from error
    return jax.tree_util.tree_unflatten(treedef, leaves)

"""`jaxdl export --workdir W --out model.bin`: a classifier's inference function and its
parameters in one file, the function serialized by `jax.export` (StableHLO).

The file runs without jaxdl's model code or config: `jaxdl.export.load(path)(inputs)` returns
the logits (`load(path)(inputs, lengths)` for a sequence classifier whose data has lengths). The
batch dimension is symbolic, so one file serves any batch size. Float runs and runs written by
`jaxdl quantize` export alike.

The parameters are arguments of the exported function, stored beside it (an .npz archive:
`module`, the serialized function, and `param_0`... in its argument order, raw bytes packed as in
compression/packing.py). Baked in as constants instead, the compiler folds a weight-only model's
dequantization into float32 weights and the file loses the compression.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxdl.compression import packing
from jaxdl.errors import UserInputError


def export_run(run_dir: Path, out: Path, checkpoint: str = "best") -> dict[str, Any]:
    """Writes checkpoint `checkpoint` of the classifier in `run_dir` (or the quantized run) to
    the file `out`; returns facts about it (model name, input shapes, bytes)."""
    if out.exists():
        raise UserInputError(
            f"--out {out} already exists; export never overwrites files. Give a new file name."
        )
    if not out.parent.is_dir():
        raise UserInputError(f"--out {out}: the directory {out.parent} does not exist.")
    from jaxdl.compression import inference

    model = inference.load(run_dir, checkpoint)
    features = model.plan.dataset.features
    leaves, treedef = jax.tree.flatten(model.variables)

    def forward(leaves: list[jax.Array], inputs: jax.Array, *lengths: jax.Array) -> jax.Array:
        variables = jax.tree.unflatten(treedef, leaves)
        kwargs = {"lengths": lengths[0]} if lengths else {}
        return model.apply(variables, inputs, train=False, **kwargs)

    (batch,) = jax.export.symbolic_shape("batch")
    inputs = [_symbolic(features["input"], batch)]
    if "length" in features:
        inputs.append(_symbolic(features["length"], batch))
    specs = [jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype) for leaf in leaves]
    exported = jax.export.export(jax.jit(forward))(specs, *inputs)
    arrays = {f"param_{i}": packing.to_bytes(np.asarray(leaf)) for i, leaf in enumerate(leaves)}
    module = np.frombuffer(exported.serialize(), np.uint8)
    with open(out, "wb") as file:  # A file object: np.savez would append '.npz' to a name.
        np.savez(file, module=module, **arrays)
    return {
        "model": model.name,
        "step": model.step,
        "inputs": [str(aval) for aval in exported.in_avals[len(leaves) :]],
        "platforms": list(exported.platforms),
        "bytes": out.stat().st_size,
    }


def _symbolic(feature: Any, batch: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((batch, *feature.shape), np.dtype(feature.dtype))


def load(path: str | Path) -> Callable[..., jax.Array]:
    """The exported inference function in `path`: call it with the inputs (and lengths)."""
    try:
        with np.load(path) as stored:
            exported = jax.export.deserialize(bytearray(stored["module"].tobytes()))
            count = len(stored.files) - 1
            leaves = [
                packing.from_bytes(stored[f"param_{i}"], aval)
                for i, aval in enumerate(exported.in_avals[:count])
            ]
    except OSError as error:
        raise UserInputError(f"{path}: cannot read ({error}).") from error
    except Exception as error:  # A truncated or foreign file fails inside the readers.
        raise UserInputError(
            f"{path} is not a model written by `jaxdl export` ({type(error).__name__})."
        ) from error

    def call(*inputs: Any) -> jax.Array:
        return exported.call(leaves, *inputs)

    return call

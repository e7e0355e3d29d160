"""How arrays are laid out over devices: a mesh with axes 'data', 'fsdp' and 'tensor'.

The batch is split over data x fsdp. Parameters (and the optimizer state that mirrors them) are
split by their logical axis names, which models attach with `nn.with_logical_partitioning`:
`LOGICAL_AXIS_RULES` below is the one table that maps a logical name to a mesh axis. Megatron's
column/row split of an MLP falls out of it: an ('embed', 'mlp') kernel is split over fsdp x
tensor, an ('mlp', 'embed') kernel over tensor x fsdp. A leaf without names (batch-norm
statistics, optimizer counters) is replicated, or under fsdp split along its largest dimension
that fsdp divides (ZeRO-3: each device holds 1/fsdp of it, XLA gathers it where a step needs it).
"""

import math
from typing import Any

import jax
import numpy as np
from flax.core import meta
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.config import MESH_AXES
from jaxdl.errors import UserInputError

DATA_AXIS, FSDP_AXIS, TENSOR_AXIS = MESH_AXES  # ("data", "fsdp", "tensor"): config.mesh.*
# Every array with a batch dimension is split over both: fsdp is data parallel for activations.
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)

# Logical axis name -> mesh axis (None: never split). Models may only use names listed here.
LOGICAL_AXIS_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": BATCH_AXES,  # Activations only; parameters have no batch axis.
    "embed": FSDP_AXIS,  # Model width, and the flattened input features of an MLP.
    "mlp": TENSOR_AXIS,  # Hidden units of an MLP block: column split, then row split.
    "heads": TENSOR_AXIS,
    "kv": None,  # Per-head features.
    "vocab": TENSOR_AXIS,
    "conv_in": FSDP_AXIS,
    "conv_out": TENSOR_AXIS,
    "classes": None,  # Logits: small, and the loss wants them whole.
    "norm": None,  # Norm scales and biases are tiny.
    "layers": None,  # The stacked axis of blocks scanned over layers.
}

# Tensors smaller than this stay replicated over fsdp: splitting them saves nothing worth a gather.
FSDP_MIN_SIZE = 2**12


def resolve_axis_sizes(sizes: dict[str, int], num_devices: int, total: int) -> dict[str, int]:
    """`sizes` with a -1 filled in; raises when their product is not the device count."""
    known = math.prod(size for size in sizes.values() if size != -1)
    rest = [axis for axis, size in sizes.items() if size == -1]
    where = f"mesh.num_devices={num_devices}" if num_devices else f"all {total} visible device(s)"
    written = " x ".join(f"{axis}={size}" for axis, size in sizes.items())
    if rest and total % known == 0:
        return {**sizes, rest[0]: total // known}
    if not rest and known == total:
        return dict(sizes)
    raise UserInputError(
        f"config.mesh: {written} asks for "
        + (f"a multiple of {known}" if rest else f"{known}")
        + f" devices, but the mesh has {total} ({where}); make the product {total} "
        "or set one axis to -1."
    )


def make_mesh(axis_sizes: dict[str, int] | None = None, num_devices: int = 0) -> Mesh:
    """A (data, fsdp, tensor) mesh over the first `num_devices` devices (0: all of them).

    `axis_sizes` defaults to everything on 'data'. Devices of one process stay together along
    the last axes, so tensor- and fsdp-parallel traffic stays within a host where it can.
    """
    devices = jax.devices()
    if num_devices > len(devices):
        raise UserInputError(
            f"config.mesh.num_devices={num_devices} but only {len(devices)} device(s) are visible; "
            "use 0 for all of them."
        )
    chosen = devices[:num_devices] if num_devices else devices
    sizes = resolve_axis_sizes(
        axis_sizes or {DATA_AXIS: -1, FSDP_AXIS: 1, TENSOR_AXIS: 1}, num_devices, len(chosen)
    )
    shape = tuple(sizes[axis] for axis in MESH_AXES)
    try:  # Accelerators: a layout that follows the physical interconnect.
        grid = mesh_utils.create_device_mesh(shape, chosen, allow_split_physical_axes=True)
    except (AssertionError, NotImplementedError, ValueError):
        grid = np.array(chosen).reshape(shape)
    return Mesh(grid, MESH_AXES)


def batch_shards(mesh: Mesh) -> int:
    return mesh.shape[DATA_AXIS] * mesh.shape[FSDP_AXIS]


def check_batch_divisible(batch_size: int, mesh: Mesh, field: str) -> None:
    """Every device of the batch axes must get the same number of examples."""
    n = batch_shards(mesh)
    if batch_size % n:
        lower, upper = (batch_size // n) * n, (batch_size // n + 1) * n
        suggestion = f"{lower} or {upper}" if lower else f"{upper}"
        raise UserInputError(
            f"config.{field}={batch_size} is not divisible by the {n} devices the batch is split "
            f"over (mesh.data x mesh.fsdp); use a multiple of {n} (e.g. {suggestion}) "
            "or change the mesh."
        )


def batch_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """Arrays whose dimension `leading` is the batch (earlier ones, e.g. steps, are whole)."""
    return NamedSharding(mesh, P(*([None] * leading), BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def logical_names(boxed_tree: Any) -> Any:
    """A tree like `meta.unbox(boxed_tree)` whose leaves are the logical names (or None)."""
    return jax.tree.map(
        lambda leaf: tuple(leaf.names) if isinstance(leaf, meta.Partitioned) else None,
        boxed_tree,
        is_leaf=lambda leaf: isinstance(leaf, meta.Partitioned),
    )


def _shape_rule(shape: tuple[int, ...], fsdp: int) -> P:
    if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp == 0:
            spec = [None] * len(shape)
            spec[dim] = FSDP_AXIS
            return P(*spec)
    return P()


def _named_rule(path: str, shape: tuple[int, ...], names: tuple, mesh: Mesh) -> P:
    spec: list[Any] = []
    used: set[str] = set()
    small = int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE
    for dim, (name, size) in enumerate(zip(names, shape, strict=True)):
        if name is not None and name not in LOGICAL_AXIS_RULES:
            raise UserInputError(
                f"parameter {path} has logical axis {name!r}, which no rule maps to a mesh axis; "
                f"use one of {', '.join(LOGICAL_AXIS_RULES)} or add a rule to "
                "LOGICAL_AXIS_RULES in jaxdl/engine/sharding.py."
            )
        axis = LOGICAL_AXIS_RULES.get(name) if name is not None else None
        if not isinstance(axis, str) or axis in used or mesh.shape[axis] == 1:
            spec.append(None)
            continue
        if size % mesh.shape[axis]:
            if axis == TENSOR_AXIS:
                divisors = [d for d in range(2, size + 1) if size % d == 0][:4]
                raise UserInputError(
                    f"config.mesh.tensor={mesh.shape[axis]} does not divide dimension {dim} "
                    f"(size {size}, logical axis {name!r}) of parameter {path}; use a tensor "
                    f"size that divides it ({', '.join(map(str, divisors)) or '1'}) or 1."
                )
            spec.append(None)  # fsdp is an optimisation: an odd dimension stays whole.
            continue
        if axis == FSDP_AXIS and small:
            spec.append(None)
            continue
        spec.append(axis)
        used.add(axis)
    return P(*spec)


def state_shardings(abstract_state: Any, names: Any, mesh: Mesh) -> Any:
    """A sharding for every leaf: by its logical names where it has some, else by its shape."""

    def leaf_sharding(path: tuple, leaf: Any, leaf_names: tuple | None) -> NamedSharding:
        shape = tuple(leaf.shape)
        if leaf_names is None:
            return NamedSharding(mesh, _shape_rule(shape, mesh.shape[FSDP_AXIS]))
        where = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
        return NamedSharding(mesh, _named_rule(where, shape, leaf_names, mesh))

    return jax.tree_util.tree_map_with_path(
        leaf_sharding, abstract_state, names, is_leaf=lambda x: x is None
    )


def put_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This process's slice of the global batch, placed on its devices."""
    return {
        name: jax.make_array_from_process_local_data(sharding, value)
        for name, value in batch.items()
    }

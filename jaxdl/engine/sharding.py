"""How arrays are laid out over devices: one mesh axis, 'data', over every device of every process.

The batch is always split along 'data'. Parameters are either replicated (data parallel) or split
along their largest evenly divisible dimension (fsdp: each device holds 1/N of every large tensor,
and XLA gathers them where the step needs them).
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.errors import UserInputError

DATA_AXIS = "data"
# Tensors smaller than this stay replicated under fsdp: splitting them saves nothing worth a gather.
FSDP_MIN_SIZE = 2**12


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (0 means all of them)."""
    devices = jax.devices()
    if num_devices > len(devices):
        raise UserInputError(
            f"config.mesh.num_devices={num_devices} but only {len(devices)} device(s) are visible; "
            "use 0 for all of them."
        )
    chosen = devices[:num_devices] if num_devices else devices
    return Mesh(np.array(chosen), (DATA_AXIS,))


def check_batch_divisible(batch_size: int, mesh: Mesh, field: str) -> None:
    """Every device must get the same number of examples."""
    n = mesh.size
    if batch_size % n:
        lower, upper = (batch_size // n) * n, (batch_size // n + 1) * n
        suggestion = f"{lower} or {upper}" if lower else f"{upper}"
        raise UserInputError(
            f"config.{field}={batch_size} is not divisible by the {n} devices in the mesh; "
            f"use a multiple of {n} (e.g. {suggestion}) or set config.mesh.num_devices."
        )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _fsdp_spec(shape: tuple[int, ...], axis_size: int) -> P:
    if int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % axis_size == 0:
            spec = [None] * len(shape)
            spec[dim] = DATA_AXIS
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: Mesh, strategy: str) -> Any:
    """A sharding for every leaf of the state, from its shape alone."""
    if strategy == "data_parallel":
        return jax.tree.map(lambda _: replicated(mesh), abstract_state)
    if strategy == "fsdp":
        return jax.tree.map(
            lambda leaf: NamedSharding(mesh, _fsdp_spec(tuple(leaf.shape), mesh.size)),
            abstract_state,
        )
    raise UserInputError(
        f"config.mesh.strategy: unknown strategy {strategy!r}; choose data_parallel or fsdp."
    )


def put_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This process's slice of the global batch, placed on its devices."""
    return {
        name: jax.make_array_from_process_local_data(sharding, value)
        for name, value in batch.items()
    }

"""A sha256 over a pytree's bytes, so two runs can be compared bit for bit from summary.json alone."""

import hashlib
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def _host_array(leaf: Any) -> np.ndarray:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        leaf = multihost_utils.process_allgather(leaf, tiled=True)
    return np.ascontiguousarray(jax.device_get(leaf))


def tree_fingerprint(tree: Any) -> str:
    """Covers each leaf's path, dtype, shape and bytes, so a renamed or reshaped leaf changes it."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = _host_array(leaf)
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def count_params(tree: Any) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))

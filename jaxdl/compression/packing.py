"""Arrays as raw bytes for the files compressed models are kept in (params.npz, exported
models): any dtype NumPy holds, including ml_dtypes' int4 and float8, with 4-bit values packed two
to a byte so an int4 weight takes half a byte on disk. Only NumPy: an exported model loads with
nothing of jaxdl's model code."""

from typing import Any

import numpy as np


def _four_bit(dtype: Any) -> bool:
    return np.dtype(dtype).name in ("int4", "uint4")


def to_bytes(array: np.ndarray) -> np.ndarray:
    """An array's raw bytes, 4-bit values packed two to a byte (undone by from_bytes)."""
    raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    if not _four_bit(array.dtype):
        return raw
    nibbles = np.append(raw & 0x0F, np.uint8(0)) if raw.size % 2 else raw & 0x0F
    return nibbles[0::2] | (nibbles[1::2] << 4)


def from_bytes(raw: np.ndarray, like: Any) -> np.ndarray:
    """The array of `like`'s shape and dtype whose bytes `to_bytes` gave."""
    dtype, size = np.dtype(like.dtype), int(np.prod(like.shape))
    if _four_bit(dtype):
        nibbles = np.stack([raw & 0x0F, raw >> 4], axis=-1).reshape(-1)[:size]
        if dtype.name == "int4":  # Two's complement in 4 bits: 8..15 are -8..-1.
            nibbles = (nibbles.astype(np.int8) ^ 8) - 8
        return nibbles.astype(dtype).reshape(like.shape)
    if raw.size != size * dtype.itemsize:
        raise ValueError(f"{raw.size} bytes for an array of shape {like.shape} and {dtype}")
    return raw.view(dtype).reshape(like.shape)

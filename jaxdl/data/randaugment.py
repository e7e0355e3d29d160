"""RandAugment (Cubuk et al. 2020): `num_ops` operations drawn uniformly per image, all at one
magnitude, on the device.

The magnitude runs from 0 (no change, except by autocontrast) to 30, each operation's strongest
setting; strength grows linearly in between, as in timm's "increasing" variants, so a larger
magnitude always distorts more. At level `m / 30`:

- brightness, contrast, color (saturation; RGB only), sharpness: factor `1 +- 0.9 * level`;
- rotate: up to 30 degrees; shear_x, shear_y: up to 0.3; translate_x, translate_y: up to 45% of
  the side (bilinear, about the centre, zeros fill what comes from outside);
- solarize: pixels above `1 - level` are inverted; posterize: `8 - round(4 * level)` bits;
- identity and autocontrast (per channel, min to 0 and max to 1) take no magnitude.

The sign (`+-`) is random per operation, for the colour factors as for the geometric ones.
Images are floats in [0, 1] and stay so. Under `jax.vmap` the per-image `lax.switch` computes
every branch and selects one: cheap next to the network on images of CIFAR or ImageNet size
(the geometric operations share one warp).
"""

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdl.data import image_ops

MAX_MAGNITUDE = 30


def _identity(image: jax.Array, level: float, sign: jax.Array) -> jax.Array:
    return image


def _autocontrast(image: jax.Array, level: float, sign: jax.Array) -> jax.Array:
    low = jnp.min(image, axis=(0, 1))
    high = jnp.max(image, axis=(0, 1))
    spread = high - low
    stretched = (image - low) / jnp.where(spread > 0, spread, 1.0)
    return jnp.where(spread > 0, jnp.clip(stretched, 0.0, 1.0), image)


def _enhance(adjust: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable:
    def op(image: jax.Array, level: float, sign: jax.Array) -> jax.Array:
        return adjust(image, 1.0 + sign * 0.9 * level)

    return op


def _solarize(image: jax.Array, level: float, sign: jax.Array) -> jax.Array:
    return jnp.where(image > 1.0 - level, 1.0 - image, image)


def _posterize(image: jax.Array, level: float, sign: jax.Array) -> jax.Array:
    dropped = round(4 * level)  # Low bits of the 8-bit value cleared.
    if dropped == 0:
        return image
    values = jnp.round(jnp.clip(image, 0.0, 1.0) * 255).astype(jnp.int32)
    return ((values >> dropped) << dropped).astype(image.dtype) / 255


def _rotate(amount: jax.Array, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    angle = amount * math.radians(30)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    return jnp.array([[cos, -sin], [sin, cos]]), jnp.zeros(2)


def _shear_x(amount: jax.Array, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    return jnp.array([[1.0, 0.0], [0.3 * amount, 1.0]]), jnp.zeros(2)


def _shear_y(amount: jax.Array, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    return jnp.array([[1.0, 0.3 * amount], [0.0, 1.0]]), jnp.zeros(2)


def _translate_x(amount: jax.Array, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    return jnp.eye(2), jnp.stack([0.0, 0.45 * width * amount])


def _translate_y(amount: jax.Array, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    return jnp.eye(2), jnp.stack([0.45 * height * amount, 0.0])


# name -> op(image, level in [0, 1], sign +-1) -> image.
PIXEL_OPS: dict[str, Callable[[jax.Array, float, jax.Array], jax.Array]] = {
    "identity": _identity,
    "autocontrast": _autocontrast,
    "brightness": _enhance(image_ops.adjust_brightness),
    "contrast": _enhance(image_ops.adjust_contrast),
    "color": _enhance(image_ops.adjust_saturation),
    "sharpness": _enhance(image_ops.adjust_sharpness),
    "solarize": _solarize,
    "posterize": _posterize,
}
# name -> transform(signed amount in [-1, 1], height, width) -> (matrix, offset) of affine_warp.
GEOMETRIC_OPS: dict[str, Callable[[jax.Array, int, int], tuple[jax.Array, jax.Array]]] = {
    "rotate": _rotate,
    "shear_x": _shear_x,
    "shear_y": _shear_y,
    "translate_x": _translate_x,
    "translate_y": _translate_y,
}
OPS = (*PIXEL_OPS, *GEOMETRIC_OPS)


@dataclasses.dataclass(frozen=True)
class RandAugment:
    """`num_ops` operations from `OPS` per image, each drawn uniformly, at `magnitude` (0..30)."""

    num_ops: int
    magnitude: float

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        return image_ops.per_example(self._one, images, key)

    def _one(self, image: jax.Array, key: jax.Array) -> jax.Array:
        # One draw for all of an image's operations (each random call adds compile time), and
        # a scan, so that the step compiles one operation whatever num_ops is.
        draws = jax.random.uniform(key, (self.num_ops, 2))
        # In float32 throughout: every branch of the switch must return the same dtype.
        out, _ = jax.lax.scan(
            lambda image, draw: (self._apply(image, draw), None), image.astype(jnp.float32), draws
        )
        return out.astype(image.dtype)

    def _apply(self, image: jax.Array, draw: jax.Array) -> jax.Array:
        """The operation `draw[0]` picks from OPS, with the sign `draw[1]` picks."""
        level = self.magnitude / MAX_MAGNITUDE
        height, width = image.shape[:2]
        choice = jnp.minimum(jnp.floor(draw[0] * len(OPS)), len(OPS) - 1).astype(jnp.int32)
        sign = jnp.where(draw[1] < 0.5, -1.0, 1.0)
        # The geometric operations differ only in their affine map: one warp serves them all.
        maps = [transform(sign * level, height, width) for transform in GEOMETRIC_OPS.values()]
        geometric = jnp.clip(choice - len(PIXEL_OPS), 0, len(GEOMETRIC_OPS) - 1)
        matrix = jnp.stack([matrix for matrix, _ in maps])[geometric]
        offset = jnp.stack([offset for _, offset in maps])[geometric]
        branches = [
            *(functools.partial(op, level=level, sign=sign) for op in PIXEL_OPS.values()),
            lambda image: image_ops.affine_warp(image, matrix, offset),
        ]
        branch = jnp.minimum(choice, len(PIXEL_OPS))
        return jax.lax.switch(branch, branches, image)

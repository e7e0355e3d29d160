"""Per-image building blocks of the on-device augmentations: colour blends and affine warps.

Every function here takes one image `(H, W, C)` with values in [0, 1], so the augmentations can
`jax.vmap` them over a batch with one PRNG key per example (`per_example`): an example's draw
then depends on its own key only, not on the rest of the batch or on how the batch is split over
devices. Everything is written with static shapes, to run inside the compiled train step.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

# ITU-R 601-2 luma, as PIL and torchvision convert RGB to grayscale.
_LUMA = (0.299, 0.587, 0.114)


def per_example(
    fn: Callable[[jax.Array, jax.Array], jax.Array], images: jax.Array, key: jax.Array
) -> jax.Array:
    """`fn(image, key)` over a batch `(B, H, W, C)`, each example with its own key from `key`."""
    return jax.vmap(fn)(images, jax.random.split(key, images.shape[0]))


def grayscale(image: jax.Array) -> jax.Array:
    """`(H, W, 1)` luminance: luma weights for RGB, the channel mean for any other count."""
    if image.shape[-1] == 3:
        return jnp.tensordot(image, jnp.asarray(_LUMA, image.dtype), axes=1)[..., None]
    return jnp.mean(image, axis=-1, keepdims=True)


def blend(image: jax.Array, degenerate: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL's ImageEnhance rule: factor 0 gives `degenerate`, 1 the image, above 1 extrapolates.

    Clipped to [0, 1], as 8-bit images are.
    """
    return jnp.clip(degenerate + factor * (image - degenerate), 0.0, 1.0)


def adjust_brightness(image: jax.Array, factor: jax.Array) -> jax.Array:
    return blend(image, jnp.zeros_like(image), factor)


def adjust_contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Blends toward the image's mean luminance, rounded to 8 bits as PIL does.

    The mean comes from an integer sum: a float sum's last bit depends on the order XLA adds
    in, which can change with the batch shape, so with the batch split over another number
    of devices the images would differ by rounding.
    """
    levels = jnp.round(jnp.clip(grayscale(image), 0.0, 1.0) * 255).astype(jnp.int32)
    mean = jnp.round(jnp.sum(levels) / levels.size) / 255
    return blend(image, mean.astype(image.dtype), factor)


def adjust_saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Blends toward the grayscale image. A grayscale image has no saturation: unchanged."""
    if image.shape[-1] != 3:
        return image
    return blend(image, grayscale(image), factor)


def adjust_sharpness(image: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL's ImageEnhance.Sharpness: blends with a 3x3 smoothed copy whose border pixels are the
    image's own (factor 0 blurs, above 1 sharpens)."""
    height, width = image.shape[:2]
    kernel = ((1.0, 1.0, 1.0), (1.0, 5.0, 1.0), (1.0, 1.0, 1.0))
    inner = sum(
        kernel[dy][dx] * image[dy : dy + height - 2, dx : dx + width - 2]
        for dy in range(3)
        for dx in range(3)
    )
    smooth = image.at[1:-1, 1:-1].set(inner / 13.0)
    return blend(image, smooth, factor)


def sample_bilinear(image: jax.Array, ys: jax.Array, xs: jax.Array, clamp: bool) -> jax.Array:
    """The image at real-valued pixel coordinates `ys`, `xs` (integers are pixel centres),
    interpolated bilinearly: an output of shape `(*ys.shape, C)`.

    `clamp`: coordinates past the border take the border pixel (a resize). Otherwise pixels
    outside the image are zeros, the fill that 'shift' and 'crop' use as well.
    """
    height, width = image.shape[:2]
    if clamp:
        ys, xs = jnp.clip(ys, 0, height - 1), jnp.clip(xs, 0, width - 1)
    y0, x0 = jnp.floor(ys), jnp.floor(xs)
    wy, wx = (ys - y0)[..., None], (xs - x0)[..., None]
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)

    def tap(y: jax.Array, x: jax.Array) -> jax.Array:
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        value = image[jnp.clip(y, 0, height - 1), jnp.clip(x, 0, width - 1)]
        return jnp.where(inside[..., None], value, 0.0)

    top = (1 - wx) * tap(y0, x0) + wx * tap(y0, x0 + 1)
    bottom = (1 - wx) * tap(y0 + 1, x0) + wx * tap(y0 + 1, x0 + 1)
    return ((1 - wy) * top + wy * bottom).astype(image.dtype)


def affine_warp(image: jax.Array, matrix: jax.Array, offset: jax.Array) -> jax.Array:
    """Output pixel p = (y, x) takes the input at `matrix @ (p - c) + c + offset`, c the image
    centre: rotations and shears turn about the centre. Zeros fill what comes from outside."""
    height, width = image.shape[:2]
    centre = jnp.asarray(((height - 1) / 2, (width - 1) / 2), jnp.float32)
    grid = jnp.stack(
        jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij"), axis=-1
    ).astype(jnp.float32)
    source = (grid - centre) @ jnp.asarray(matrix, jnp.float32).T + centre + offset
    return sample_bilinear(image, source[..., 0], source[..., 1], clamp=False)

"""Train-time augmentations, run on the device inside the compiled train step.

Each augmentation maps a batch of images `(B, H, W, C)` and a PRNG key to augmented images, with
its own random draw per example. The engine keys them with the step number (`augment_batch`), so
a resumed run draws exactly what an uninterrupted one would, and no iterator state is needed.
Random bits do not depend on how the batch is split over devices: the newer augmentations draw
each example from its own key (`image_ops.per_example`), so an example's result does not depend
on the rest of the batch either ('shift' and 'flip' keep the draws they always had).

Images are floats in [0, 1] (every dataset here is). The batch-level 'mixup' and 'cutmix'
(data/mix.py) run after all per-image augmentations, wherever they stand in the list, and add
soft labels `batch['target']`; with both listed, each step applies one of them, chosen with
equal probability (as timm does).
"""

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from jaxdl.data import image_ops
from jaxdl.data.mix import BatchMix, CutMix, Mixup, mix_batch
from jaxdl.data.randaugment import MAX_MAGNITUDE, RandAugment
from jaxdl.errors import UserInputError, close_matches


@dataclasses.dataclass(frozen=True)
class RandomShift:
    """Translates each image by up to `max_shift` pixels each way, filling with zeros."""

    max_shift: int

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        m = self.max_shift
        height, width = images.shape[1:3]
        # Offsets into the zero-padded image: m means no shift.
        offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * m + 1)
        padded = jnp.pad(images, ((0, 0), (m, m), (m, m), (0, 0)))

        def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
            start = (offset[0], offset[1], 0)
            return jax.lax.dynamic_slice(image, start, (height, width, image.shape[-1]))

        return jax.vmap(crop)(padded, offsets)


@dataclasses.dataclass(frozen=True)
class RandomFlip:
    """Mirrors each image left to right with probability 1/2 (not for digits or text)."""

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
        return jnp.where(flip, images[:, :, ::-1], images)


@dataclasses.dataclass(frozen=True)
class RandomCrop:
    """Zero-pads `padding` pixels on each side, then crops a window of the original size at a
    uniform offset: the standard CIFAR augmentation."""

    padding: int

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        p = self.padding

        def one(image: jax.Array, key: jax.Array) -> jax.Array:
            padded = jnp.pad(image, ((p, p), (p, p), (0, 0)))
            # One uniform draw (randint draws twice, and each draw adds compile time to the
            # step); dynamic_slice would clamp a start of 2p + 1 that rounding gave to 2p.
            offset = jnp.floor(jax.random.uniform(key, (2,)) * (2 * p + 1)).astype(jnp.int32)
            return jax.lax.dynamic_slice(padded, (offset[0], offset[1], 0), image.shape)

        return image_ops.per_example(one, images, key)


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop:
    """Inception-style crop (torchvision's RandomResizedCrop), resized back to the input size.

    The crop covers a fraction in `scale` of the image's area, with a width/height ratio drawn
    log-uniformly from `ratio`, both rounded to whole pixels. Of 10 draws the first that fits
    in the image is taken; if none does, the largest centred crop within `ratio`. Bilinear.
    """

    scale: tuple[float, float]
    ratio: tuple[float, float]
    attempts: int = 10

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        return image_ops.per_example(self._one, images, key)

    def _one(self, image: jax.Array, key: jax.Array) -> jax.Array:
        height, width = image.shape[:2]
        draws = jax.random.uniform(key, (2, self.attempts + 1))
        fraction = self.scale[0] + (self.scale[1] - self.scale[0]) * draws[0, :-1]
        low, high = math.log(self.ratio[0]), math.log(self.ratio[1])
        ratio = jnp.exp(low + (high - low) * draws[1, :-1])
        area = height * width * fraction
        crop_w, crop_h = jnp.round(jnp.sqrt(area * ratio)), jnp.round(jnp.sqrt(area / ratio))
        fits = (crop_w >= 1) & (crop_w <= width) & (crop_h >= 1) & (crop_h <= height)
        first, found = jnp.argmax(fits), jnp.any(fits)
        # The fallback: the whole image, narrowed to the nearest ratio in range.
        aspect = min(max(width / height, self.ratio[0]), self.ratio[1])
        crop_w = jnp.where(found, crop_w[first], min(width, round(height * aspect)))
        crop_h = jnp.where(found, crop_h[first], min(height, round(width / aspect)))
        # A uniform whole-pixel corner for a draw; centred for the fallback.
        top = jnp.where(
            found, jnp.floor(draws[0, -1] * (height - crop_h + 1)), (height - crop_h) // 2
        )
        left = jnp.where(
            found, jnp.floor(draws[1, -1] * (width - crop_w + 1)), (width - crop_w) // 2
        )
        ys = top + (jnp.arange(height) + 0.5) * crop_h / height - 0.5
        xs = left + (jnp.arange(width) + 0.5) * crop_w / width - 0.5
        grid_y, grid_x = jnp.meshgrid(ys, xs, indexing="ij")
        return image_ops.sample_bilinear(image, grid_y, grid_x, clamp=True)


@dataclasses.dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast and saturation, each factor uniform in
    [1 - strength, 1 + strength], applied in that fixed order (clipped to [0, 1] after each).
    RGB images only."""

    strength: float

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        return image_ops.per_example(self._one, images, key)

    def _one(self, image: jax.Array, key: jax.Array) -> jax.Array:
        s, dtype = self.strength, image.dtype
        brightness, contrast, saturation = jax.random.uniform(key, (3,), minval=1 - s, maxval=1 + s)
        image = image_ops.adjust_brightness(image, brightness)
        image = image_ops.adjust_contrast(image, contrast)
        return image_ops.adjust_saturation(image, saturation).astype(dtype)


ImageAugmentation = (
    RandomShift | RandomFlip | RandomCrop | RandomResizedCrop | ColorJitter | RandAugment
)
Augmentation = ImageAugmentation | BatchMix


def augment_batch(
    augmentations: Sequence[Augmentation], batch: dict[str, jax.Array], key: jax.Array
) -> dict[str, jax.Array]:
    """`batch` with every augmentation applied to `batch['input']`, each with its own key.

    Augmentation i draws from `fold_in(key, i)`. The per-image ones run in their order; then,
    if any are listed, mixup or cutmix (one of them, picked per step), with the key of the
    first listed, which adds `batch['target']`.
    """
    if not augmentations:
        return batch
    mixing = [
        i for i, augmentation in enumerate(augmentations) if isinstance(augmentation, BatchMix)
    ]
    images = batch["input"]
    for index, augmentation in enumerate(augmentations):
        if index not in mixing:
            images = augmentation(images, jax.random.fold_in(key, index))
    batch = {**batch, "input": images}
    if not mixing:
        return batch
    mixes = [augmentations[index] for index in mixing]
    return mix_batch(mixes, batch, jax.random.fold_in(key, mixing[0]))


# Building from the config: one builder per name, each checking the fields it reads.

Config = ml_collections.ConfigDict
Builder = Callable[[Config, tuple[int, ...], int], Augmentation]


def _field_error(config: Config, field: str, rule: str) -> UserInputError:
    return UserInputError(f"config.data.{field}={config.get(field)!r}: {rule}")


def _is_number(value: object) -> bool:
    """A finite int or float (not a bool, though Python counts bools as ints)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # An int too large for a float.
        return False


def _number(config: Config, field: str, ok: Callable[[float], bool], rule: str) -> float:
    """`config[field]` as a finite number that passes `ok`, or one line naming field and rule."""
    value = config.get(field)
    if not (_is_number(value) and ok(value)):
        raise _field_error(config, field, rule)
    return value


def _integer(config: Config, field: str, low: int, high: float, rule: str) -> int:
    value = _number(config, field, lambda v: float(v).is_integer() and low <= v <= high, rule)
    return int(value)


def _range(
    config: Config, field: str, ok: Callable[[float, float], bool], rule: str
) -> tuple[float, float]:
    """`config[field]` as a pair (low, high) of finite numbers that passes `ok`."""
    value = config.get(field)
    pair = tuple(value) if isinstance(value, tuple | list) else ()
    if not (len(pair) == 2 and all(map(_is_number, pair)) and ok(*pair)):
        raise _field_error(config, field, rule)
    return float(pair[0]), float(pair[1])


def _shift(config: Config, shape: tuple[int, ...], num_classes: int) -> RandomShift:
    max_shift = int(config.get("max_shift", 1))
    if not 0 < max_shift < min(shape[:2]):
        raise UserInputError(
            f"config.data.max_shift={max_shift}: must be between 1 and the image side - 1."
        )
    return RandomShift(max_shift)


def _crop(config: Config, shape: tuple[int, ...], num_classes: int) -> RandomCrop:
    side = min(shape[:2])
    rule = f"must be a whole number of pixels from 1 to {side - 1} (below the image side)."
    return RandomCrop(_integer(config, "crop_padding", 1, side - 1, rule))


def _resized_crop(config: Config, shape: tuple[int, ...], num_classes: int) -> RandomResizedCrop:
    scale = _range(
        config,
        "resized_crop_scale",
        lambda low, high: 0 < low <= high <= 1,
        "must be (low, high) area fractions with 0 < low <= high <= 1, e.g. (0.08, 1.0).",
    )
    ratio = _range(
        config,
        "resized_crop_ratio",
        lambda low, high: 0 < low <= high,
        "must be (low, high) aspect ratios with 0 < low <= high, e.g. (0.75, 1.3333).",
    )
    return RandomResizedCrop(scale, ratio)


def _color_jitter(config: Config, shape: tuple[int, ...], num_classes: int) -> ColorJitter:
    if shape[-1] != 3:
        raise UserInputError(
            f"config.data.augment: 'color_jitter' needs RGB images (3 channels), but the inputs "
            f"have {shape[-1]}; remove it."
        )
    rule = "must be a number from 0 up to (not including) 1, e.g. 0.4."
    return ColorJitter(_number(config, "color_jitter", lambda v: 0 <= v < 1, rule))


def _randaugment(config: Config, shape: tuple[int, ...], num_classes: int) -> RandAugment:
    ops = _integer(config, "randaugment_ops", 1, math.inf, "must be a whole number >= 1, e.g. 2.")
    magnitude = _number(
        config,
        "randaugment_magnitude",
        lambda v: 0 <= v <= MAX_MAGNITUDE,
        f"must be a number from 0 to {MAX_MAGNITUDE}, e.g. 9.",
    )
    return RandAugment(ops, magnitude)


def _mix(kind: type[Mixup] | type[CutMix], field: str) -> Builder:
    def build(config: Config, shape: tuple[int, ...], num_classes: int) -> BatchMix:
        rule = "must be a positive number (the Beta(alpha, alpha) parameter), e.g. 1.0."
        return kind(_number(config, field, lambda v: v > 0, rule), num_classes)

    return build


_BUILDERS: dict[str, Builder] = {
    "shift": _shift,
    "flip": lambda config, shape, num_classes: RandomFlip(),
    "crop": _crop,
    "resized_crop": _resized_crop,
    "color_jitter": _color_jitter,
    "randaugment": _randaugment,
    "mixup": _mix(Mixup, "mixup_alpha"),
    "cutmix": _mix(CutMix, "cutmix_alpha"),
}
AUGMENTATIONS = tuple(_BUILDERS)


def build_augmentations(
    config: ml_collections.ConfigDict, input_shape: Sequence[int], num_classes: int
) -> tuple[Augmentation, ...]:
    """Transforms named by `config.augment` (the `data` sub-config), one per name in order,
    checked against the inputs; `num_classes` sizes the soft labels of mixup and cutmix."""
    names = tuple(config.get("augment", ()))
    transforms: list[Augmentation] = []
    for name in names:
        if name not in AUGMENTATIONS:
            raise UserInputError(
                f"config.data.augment: unknown augmentation {name!r}.{close_matches(name, AUGMENTATIONS)} "
                f"Choose from {', '.join(AUGMENTATIONS)}."
            )
        if len(input_shape) != 3:
            raise UserInputError(
                f"config.data.augment: {name!r} needs images (height, width, channels), "
                f"but the inputs have shape {tuple(input_shape)}; remove it."
            )
        transforms.append(_BUILDERS[name](config, tuple(input_shape), num_classes))
    return tuple(transforms)

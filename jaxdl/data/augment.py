"""Train-time augmentations, run on the device inside the compiled train step.

Each augmentation maps a batch of images `(B, H, W, C)` and a PRNG key to augmented images, with
its own random draw per example. The engine keys them with the step number (`augment_batch`), so
a resumed run draws exactly what an uninterrupted one would, and no iterator state is needed.
Random bits do not depend on how the batch is split over devices.
"""

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from jaxdl.errors import UserInputError, close_matches

AUGMENTATIONS = ("shift", "flip")


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


Augmentation = RandomShift | RandomFlip


def augment_batch(
    augmentations: Sequence[Augmentation], batch: dict[str, jax.Array], key: jax.Array
) -> dict[str, jax.Array]:
    """`batch` with every augmentation applied to `batch['input']`, each with its own key."""
    if not augmentations:
        return batch
    images = batch["input"]
    for index, augmentation in enumerate(augmentations):
        images = augmentation(images, jax.random.fold_in(key, index))
    return {**batch, "input": images}


def build_augmentations(
    config: ml_collections.ConfigDict, input_shape: Sequence[int]
) -> tuple[Augmentation, ...]:
    """Transforms named by `config.augment` (the `data` sub-config), checked against the inputs."""
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
        if name == "shift":
            max_shift = int(config.get("max_shift", 1))
            if not 0 < max_shift < min(input_shape[:2]):
                raise UserInputError(
                    f"config.data.max_shift={max_shift}: must be between 1 and the image side - 1."
                )
            transforms.append(RandomShift(max_shift))
        else:
            transforms.append(RandomFlip())
    return tuple(transforms)

"""Train-time augmentations as Grain random maps: seeded per example, so resumes stay exact.

Grain derives each example's generator from the pipeline seed and the example's position in the
stream, so the same step always sees the same augmented batch, whether or not the run resumed.
"""

import dataclasses
from collections.abc import Sequence

import ml_collections
import numpy as np

from jaxdl.errors import UserInputError, close_matches

AUGMENTATIONS = ("shift", "flip")


@dataclasses.dataclass(frozen=True)
class RandomShift:
    """Translates an image by up to `max_shift` pixels each way, filling with zeros."""

    max_shift: int

    def __call__(self, example: dict, rng: np.random.Generator) -> dict:
        image = example["input"]
        m = self.max_shift
        dy, dx = rng.integers(-m, m + 1, size=2)
        padded = np.pad(image, ((m, m), (m, m), (0, 0)))
        h, w = image.shape[:2]
        return {**example, "input": padded[m + dy : m + dy + h, m + dx : m + dx + w]}


@dataclasses.dataclass(frozen=True)
class RandomFlip:
    """Mirrors an image left to right with probability 1/2 (not for digits or text)."""

    def __call__(self, example: dict, rng: np.random.Generator) -> dict:
        if rng.random() < 0.5:
            return {**example, "input": example["input"][:, ::-1]}
        return example


def build_augmentations(
    config: ml_collections.ConfigDict, input_shape: Sequence[int]
) -> tuple[RandomShift | RandomFlip, ...]:
    """Transforms named by `config.augment` (the `data` sub-config), checked against the inputs."""
    names = tuple(config.get("augment", ()))
    transforms = []
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

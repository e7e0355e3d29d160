"""CelebA faces (TFDS `celeb_a`), read with tfds.data_source, labelled by one attribute.

Each 218x178 photo is centre-cropped to its central 178x178 square (the face) and resized to
`data.image_size` (default 64) on the host, in the Grain reader; pixels in [0, 1]. The label is
one of the 40 binary attributes (`data.attribute`, default 'Male'): two classes, so classifiers
trained here give the features of a generative run's sample quality, and conditional models
generate by attribute. TFDS's own train / validation / test splits are kept.

jaxdl never downloads CelebA: prepare it with `tfds build celeb_a --file_format array_record`
on a machine that has the files.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from jaxdl.data.spec import SPLIT_NAMES, DatasetSpec
from jaxdl.data.tfds_sources import checked_data_dir, checked_rgb_size, open_prepared
from jaxdl.errors import UserInputError, close_matches

NAME = "celeb_a"
DEFAULT_IMAGE_SIZE = 64
DEFAULT_ATTRIBUTE = "Male"


@dataclasses.dataclass(frozen=True)
class CropResize:
    """Raw record {'image': (H, W, 3) uint8, 'attributes': {...}} -> a (size, size, 3) float32
    example in [0, 1] with the attribute as its label."""

    size: int
    attribute: str

    def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        pixels = np.asarray(record["image"], np.uint8)
        side = min(pixels.shape[:2])
        top, left = (pixels.shape[0] - side) // 2, (pixels.shape[1] - side) // 2
        image = Image.fromarray(pixels[top : top + side, left : left + side])
        image = image.resize((self.size, self.size), Image.BILINEAR)
        label = np.int32(bool(record["attributes"][self.attribute]))
        return {"input": np.asarray(image, np.float32) / np.float32(255), "label": label}


def load_celeb_a(
    *, data_dir: str, validation_fraction: float, input_kind: str, image_size: int, attribute: str
) -> DatasetSpec:
    """celeb_a from an already prepared data_dir."""
    del validation_fraction  # CelebA has its own validation split.
    size = checked_rgb_size(NAME, input_kind, image_size, DEFAULT_IMAGE_SIZE)
    data_dir = checked_data_dir(data_dir, NAME, creates=False)
    splits = open_prepared(NAME, SPLIT_NAMES, data_dir)
    attributes = tuple(splits["test"].dataset_info.features["attributes"].keys())
    if attribute not in attributes:
        raise UserInputError(
            f"data.attribute={attribute!r} is not a CelebA attribute.{close_matches(attribute, attributes)}"
            f" Choose one of {', '.join(attributes)}."
        )
    return DatasetSpec(
        name=NAME,
        splits=dict(splits),
        preprocess=CropResize(size, attribute),
        input_shape=(size, size, 3),
        num_classes=2,
        input_range=(0.0, 1.0),  # Pixels / 255.
    )

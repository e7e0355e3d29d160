"""ImageNet (TFDS `imagenet2012`), read with tfds.data_source: images of mixed sizes.

Every image is resized so that its shorter side is image_size * 256 / 224 (the usual ratio)
and centre-cropped to image_size x image_size, in the Grain reader (per example, on the host).
Train-time randomness (random resized crops, flips, RandAugment, mixup) then runs on the
device like every other augmentation (data/augment.py), on that centre crop: this keeps the
host's per-image work fixed and the run resumable without iterator state, at the price of
crops drawn from the central 87.5% of each image rather than the whole of it.

jaxdl never downloads ImageNet: prepare it with `tfds build imagenet2012 --file_format
array_record` from the manually downloaded archives, on a machine that has them.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from jaxdl.data.spec import DatasetSpec, split_off_validation
from jaxdl.data.tfds_sources import checked_data_dir, checked_rgb_size, open_prepared

NAME = "imagenet2012"
DEFAULT_IMAGE_SIZE = 224
# Centre crops cover 224 / 256 of the shorter side, as in the ResNet and ViT papers' evaluation.
CROP_FRACTION = 224 / 256


@dataclasses.dataclass(frozen=True)
class ResizeCentreCrop:
    """Raw record {'image': (H, W, 3) uint8, 'label'} -> a (size, size, 3) float32 example in [0, 1]."""

    size: int

    def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        image = Image.fromarray(np.asarray(record["image"], np.uint8))
        scale = self.size / CROP_FRACTION / min(image.size)
        width, height = (max(self.size, round(side * scale)) for side in image.size)
        image = image.resize((width, height), Image.BILINEAR)
        left, top = (width - self.size) // 2, (height - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        pixels = np.asarray(image, np.float32) / np.float32(255)
        return {"input": pixels, "label": np.int32(record["label"])}


def load_imagenet(
    *, data_dir: str, validation_fraction: float, input_kind: str, image_size: int
) -> DatasetSpec:
    """imagenet2012 from an already prepared data_dir. Its 50,000 labelled validation images
    are the test split; validation is carved from the end of train."""
    size = checked_rgb_size(NAME, input_kind, image_size, DEFAULT_IMAGE_SIZE)
    data_dir = checked_data_dir(data_dir, NAME, creates=False)
    splits = open_prepared(NAME, ("train", "validation"), data_dir)
    train, validation = split_off_validation(
        splits["train"], validation_fraction, what=f"dataset {NAME!r}"
    )
    features = splits["validation"].dataset_info.features
    return DatasetSpec(
        name=NAME,
        splits={"train": train, "validation": validation, "test": splits["validation"]},
        preprocess=ResizeCentreCrop(size),
        input_shape=(size, size, 3),
        num_classes=features["label"].num_classes,
        input_range=(0.0, 1.0),  # Pixels / 255.
    )

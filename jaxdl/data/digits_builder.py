"""A TFDS builder over scikit-learn's 8x8 digits: a real dataset that needs no download.

Importing this module registers the builder with TFDS under BUILDER_NAME, so that
tfds.builder / tfds.data_source find it. The name is prefixed so that it cannot clash with
a TFDS built-in (none in tfds.list_builders(with_community_datasets=False) is named so).
"""

import pathlib

import numpy as np
import tensorflow_datasets as tfds

BUILDER_NAME = "sklearn_digits"
NUM_CLASSES = 10
MAX_PIXEL = 16  # load_digits pixels are counts of set bits in 4x4 blocks: 0..16.
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1  # of the whole dataset, taken from what the test split leaves.


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Fixed stratified train/validation/test indices into load_digits() (1257/180/360)."""
    # Imported here: scikit-learn takes 1.4 s to import, and only preparing the data needs it.
    from sklearn.model_selection import train_test_split

    all_indices = np.arange(len(labels))
    rest, test = train_test_split(
        all_indices, test_size=TEST_FRACTION, stratify=labels, random_state=0
    )
    num_validation = round(VALIDATION_FRACTION * len(labels))
    train, validation = train_test_split(
        rest, test_size=num_validation, stratify=labels[rest], random_state=0
    )
    return {"train": train, "validation": validation, "test": test}


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
    """sklearn.datasets.load_digits() as uint8 (8, 8, 1) images with their original 0..16 values."""

    VERSION = tfds.core.Version("1.0.0")
    # TFDS derives this from the package and, for a package outside TFDS, needs the optional
    # importlib_resources module to do so; the file is known, so say it.
    code_path = pathlib.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        # A Tensor feature, not Image: Image encodes PNG with TensorFlow, which is not installed.
        return tfds.core.DatasetInfo(
            builder=self,
            description="scikit-learn's 1,797 8x8 handwritten digits (UCI optdigits test set).",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # Everything ships with scikit-learn.
        from sklearn.datasets import load_digits  # Only when preparing; see split_indices.

        digits = load_digits()
        images = digits.images.astype(np.uint8)[..., np.newaxis]
        labels = digits.target
        return {
            split: self._generate_examples(images, labels, indices)
            for split, indices in split_indices(labels).items()
        }

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        for index in indices:
            yield int(index), {"image": images[index], "label": int(labels[index])}

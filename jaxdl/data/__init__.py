"""Data: datasets as DatasetSpec (TFDS data sources or .npz files) and Grain pipelines over them.

Imported by the engine and the CLI only. Nothing here imports TensorFlow.
"""

from jaxdl.data.arrays import PIPELINES
from jaxdl.data.augment import AUGMENTATIONS, augment_batch, build_augmentations
from jaxdl.data.datasets import DATASET_NAMES, load_dataset
from jaxdl.data.pipeline import eval_batches, train_iterator
from jaxdl.data.spec import DatasetSpec, Feature, batch_nbytes, example_batch

__all__ = [
    "AUGMENTATIONS",
    "DATASET_NAMES",
    "PIPELINES",
    "DatasetSpec",
    "Feature",
    "augment_batch",
    "batch_nbytes",
    "build_augmentations",
    "eval_batches",
    "example_batch",
    "load_dataset",
    "train_iterator",
]

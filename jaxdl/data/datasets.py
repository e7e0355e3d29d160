"""load_dataset: from the `data` sub-config to a DatasetSpec."""

import functools
from collections.abc import Callable

from ml_collections import ConfigDict

from jaxdl.data.arrays import in_memory
from jaxdl.data.celeb_a import DEFAULT_ATTRIBUTE, load_celeb_a
from jaxdl.data.celeb_a import NAME as CELEB_A
from jaxdl.data.graph_sources import (
    GRAPH_DATASET_NAMES,
    check_no_subset,
    is_graph_dataset,
    load_graph_dataset,
)
from jaxdl.data.imagenet import NAME as IMAGENET
from jaxdl.data.imagenet import load_imagenet
from jaxdl.data.imbalance import apply_long_tail
from jaxdl.data.npz_source import NPZ_PREFIX, load_npz
from jaxdl.data.spec import DatasetSpec
from jaxdl.data.subset import apply_subset
from jaxdl.data.text_sources import (
    ALGORITHMIC_NAMES,
    STDLIB_CHARS,
    load_algorithmic,
    load_stdlib_chars,
)
from jaxdl.data.tfds_sources import TFDS_IMAGE_DATASETS, load_digits, load_tfds_images
from jaxdl.data.tfds_text import TFDS_TEXT_DATASETS, load_tfds_text
from jaxdl.errors import UserInputError, unknown_name_error

# Each loader takes keyword arguments data_dir, validation_fraction, input_kind.
_LOADERS: dict[str, Callable[..., DatasetSpec]] = {
    "digits": load_digits,
    **{name: functools.partial(load_tfds_images, name) for name in TFDS_IMAGE_DATASETS},
    IMAGENET: load_imagenet,
    CELEB_A: load_celeb_a,
    STDLIB_CHARS: load_stdlib_chars,
    **{name: functools.partial(load_tfds_text, name) for name in TFDS_TEXT_DATASETS},
    **{name: functools.partial(load_algorithmic, name) for name in ALGORITHMIC_NAMES},
}
# Datasets whose images come in mixed sizes and are resized to data.image_size.
_RESIZED = (IMAGENET, CELEB_A)
DATASET_NAMES: tuple[str, ...] = (*_LOADERS, *GRAPH_DATASET_NAMES)


def load_dataset(config: ConfigDict) -> DatasetSpec:
    """The dataset `config.name` names, with fixed train/validation/test splits.

    Reads name, data_dir ('' = the TFDS default), validation_fraction (used only when the
    dataset has no validation split), input_kind, and pipeline ('auto', 'memory' or 'stream':
    whether the splits are decoded into memory once, see arrays.py); other fields are for the
    pipeline. classes and train_examples_per_class pick a subset of it (subset.py),
    imbalance_ratio makes its train split long-tailed (imbalance.py).
    """
    if is_graph_dataset(config.name):  # Decoded into memory at load; batches are packs.
        check_no_subset(config)
        return load_graph_dataset(config)
    records = apply_long_tail(apply_subset(_load_records(config), config), config)
    return in_memory(records, config.get("pipeline", "auto"))


def _load_records(config: ConfigDict) -> DatasetSpec:
    name = config.name
    if not isinstance(name, str):
        raise UserInputError(f"data.name must be a string, got {name!r}.")
    validation_fraction = config.get("validation_fraction", 0.1)
    input_kind = config.get("input_kind", "auto")
    if name.startswith(NPZ_PREFIX):
        return load_npz(name, validation_fraction=validation_fraction, input_kind=input_kind)
    if name not in _LOADERS:
        raise unknown_name_error("dataset", name, [*DATASET_NAMES, f"{NPZ_PREFIX}<path>"])
    image_size = config.get("image_size", 0)
    sized = {"image_size": image_size} if name in _RESIZED else {}
    if name == CELEB_A:  # Which attribute is the label (experiments/celeb_a_*.py add the field).
        sized["attribute"] = config.get("attribute", DEFAULT_ATTRIBUTE)
    spec = _LOADERS[name](
        data_dir=config.get("data_dir", ""),
        validation_fraction=validation_fraction,
        input_kind=input_kind,
        **sized,
    )
    if image_size and not sized and spec.input_shape[0] != image_size:
        raise UserInputError(
            f"data.image_size={image_size}: dataset {name!r} has {spec.input_shape[0]}-pixel "
            f"images and is not resized (only {', '.join(_RESIZED)} are); set it to 0."
        )
    return spec

"""Datasets read with tfds.data_source: the TFDS image catalog and the local digits builder.

Only tfds.data_source is used: tfds.load and as_dataset import TensorFlow, which jaxdl does
not install. data_source needs the array_record file format.
"""

import pathlib
from collections.abc import Mapping, Sequence

import tensorflow_datasets as tfds

from jaxdl.data import digits_builder
from jaxdl.data.spec import (
    SPLIT_NAMES,
    DatasetSpec,
    RecordSource,
    ScaleToFloat,
    resolve_input_shape,
    split_off_validation,
)
from jaxdl.errors import UserInputError
from jaxdl.logs import absl_warnings_off

# All three ship train and test only; validation is carved from the end of train.
TFDS_IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10")
ARRAY_RECORD = tfds.core.file_adapters.FileFormat.ARRAY_RECORD


def load_digits(*, data_dir: str, validation_fraction: float, input_kind: str) -> DatasetSpec:
    """scikit-learn digits, prepared into data_dir on first use (no network needed)."""
    del validation_fraction  # The builder has fixed splits, validation included.
    data_dir = prepare_builder(digits_builder.SklearnDigits, "digits", data_dir)
    splits = open_prepared(digits_builder.BUILDER_NAME, SPLIT_NAMES, data_dir)
    return _image_spec("digits", splits, digits_builder.MAX_PIXEL, input_kind)


def prepare_builder(
    builder_class: type[tfds.core.GeneratorBasedBuilder],
    name: str,
    data_dir: str,
    config: str | None = None,
) -> str:
    """Prepares one of jaxdl's own builders (dataset `name`) into data_dir unless it is there
    already; returns data_dir checked and made absolute ('' for the TFDS default)."""
    data_dir = checked_data_dir(data_dir, name, creates=True)
    # Bars would flood logs on every first run; TFDS still prints one line to stdout.
    tfds.disable_progress_bar()
    builder = builder_class(data_dir=data_dir or None, config=config, file_format=ARRAY_RECORD)
    try:
        # The GCS probe is a network call: skip it, these builders are never published there.
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    except OSError as error:  # Read-only or full disk, or a permission missing under data_dir.
        where = f"data.data_dir={data_dir!r}" if data_dir else "the TFDS default data_dir"
        raise UserInputError(
            f"cannot prepare dataset {name!r} in {where} ({error.strerror or error}"
            f"{': ' + str(error.filename) if error.filename else ''}); make it writable or set "
            "data.data_dir to a writable folder."
        ) from error
    return data_dir


def load_tfds_images(
    name: str, *, data_dir: str, validation_fraction: float, input_kind: str
) -> DatasetSpec:
    """mnist / fashion_mnist / cifar10 from an already prepared data_dir; never downloads."""
    data_dir = checked_data_dir(data_dir, name, creates=False)
    splits = open_prepared(name, ("train", "test"), data_dir)
    train, validation = split_off_validation(
        splits["train"], validation_fraction, what=f"dataset {name!r}"
    )
    splits = {"train": train, "validation": validation, "test": splits["test"]}
    return _image_spec(name, splits, 255, input_kind)


def checked_rgb_size(name: str, input_kind: str, image_size: int, default: int) -> int:
    """The side that a dataset of RGB photos resized in the reader gives (data.image_size, 0
    for `default`), after checking data.input_kind and the side."""
    if input_kind not in ("auto", "image"):
        raise UserInputError(
            f"data.input_kind={input_kind!r}: {name} holds RGB images; use 'auto' or 'image'."
        )
    size = image_size or default
    if size < 8:
        raise UserInputError(f"data.image_size={image_size!r}: use 0 ({default}) or a side >= 8.")
    return size


def checked_data_dir(data_dir: str, name: str, *, creates: bool) -> str:
    """data.data_dir as an absolute path ('' stays '': TFDS's default), checked before TFDS.

    TFDS would otherwise fail deep inside with a traceback (a file given as the dir), or quietly
    create a whole tree for a typo. `creates`: the loader prepares the dataset into the dir, so it
    may be absent as long as its parent exists. A missing dir to read from is left to
    open_prepared, which explains it (tfds.testing.mock_data needs no dir at all).
    """
    if not data_dir:
        return ""
    path = pathlib.Path(data_dir).expanduser().resolve()
    field = f"data.data_dir={data_dir!r}"
    try:
        if path.exists() and not path.is_dir():
            raise UserInputError(f"{field} is a file, not a directory; fix data.data_dir.")
        if not path.exists() and not path.parent.is_dir():
            raise UserInputError(
                f"{field}: neither {path} nor its parent {path.parent} exists; create the "
                "parent (jaxdl creates only the last folder) or fix data.data_dir."
            )
    except OSError as error:
        raise UserInputError(
            f"{field} cannot be read ({error.strerror or error}); fix its permissions or set "
            "data.data_dir to another folder."
        ) from error
    return str(path)


def _image_spec(
    name: str, splits: Mapping[str, RecordSource], pixel_max: int, input_kind: str
) -> DatasetSpec:
    features = splits["test"].dataset_info.features
    input_shape = resolve_input_shape(
        tuple(features["image"].shape), input_kind, what=f"dataset {name!r}"
    )
    return DatasetSpec(
        name=name,
        splits=splits,
        preprocess=ScaleToFloat("image", input_shape, float(pixel_max)),
        input_shape=input_shape,
        num_classes=features["label"].num_classes,
        input_range=(0.0, 1.0),  # Pixels divided by their maximum.
    )


def open_prepared(name: str, splits: Sequence[str], data_dir: str) -> dict[str, RecordSource]:
    try:
        with absl_warnings_off():
            return tfds.data_source(
                name,
                split={split: split for split in splits},
                data_dir=data_dir or None,
                download=False,
            )
    except Exception as error:  # TFDS raises assorted types here; what is on disk says which.
        if data_dir and not pathlib.Path(data_dir).exists():
            raise UserInputError(
                f"dataset {name!r} is not prepared in {data_dir} (data.data_dir, which does not "
                "exist). This machine has no internet, so jaxdl never downloads it. "
                + _build_hint(name, pathlib.Path(data_dir))
            ) from error
        with absl_warnings_off():
            problem = _preparation_problem(name, data_dir)
        if problem is None:
            raise
        raise problem from error


def _build_hint(name: str, root: pathlib.Path) -> str:
    return (
        f"On a machine with internet (and TensorFlow) run `tfds build {name} --data_dir DIR "
        f"--file_format array_record`, then copy DIR/{name} into {root} "
        "(or set data.data_dir to the folder that holds it)."
    )


def _preparation_problem(name: str, data_dir: str) -> UserInputError | None:
    """Why `name` cannot be read from data_dir, or None when it looks fine."""
    builder = tfds.builder(name, data_dir=data_dir or None)
    # builder.data_dir is <root>/<name>/<version>.
    root = pathlib.Path(builder.data_dir).parents[1]
    where = (
        f"{root} (data.data_dir)" if data_dir else f"{root} (the TFDS default: data.data_dir='')"
    )
    build = _build_hint(name, root)
    if not builder.is_prepared():
        return UserInputError(
            f"dataset {name!r} is not prepared in {where}. This machine has no "
            f"internet, so jaxdl never downloads it. {build}"
        )
    if builder.info.file_format != ARRAY_RECORD:
        return UserInputError(
            f"dataset {name!r} in {where} was prepared as "
            f"{builder.info.file_format.value}; jaxdl reads array_record only, because random "
            f"access without TensorFlow needs it. {build}"
        )
    return None

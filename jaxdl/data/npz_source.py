"""Datasets from the user's own .npz file, named in the config as data.name='npz:<path>'.

The file holds x_train, y_train, x_test, y_test and optionally x_val, y_val. Arrays are read
into memory once; splits index into them, and each example is cast to float32 only when read.
"""

import dataclasses
import pathlib
import zipfile
from typing import Any

import numpy as np

from jaxdl.data.spec import DatasetSpec, ScaleToFloat, resolve_input_shape, split_off_validation
from jaxdl.errors import UserInputError, one_line

NPZ_PREFIX = "npz:"
SPLIT_ARRAYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
VALIDATION_ARRAYS = ("x_val", "y_val")


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySplit:
    """Records {'input': x[i], 'label': y[i]} over arrays already in memory."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input": self.x[index], "label": self.y[index]}


def load_npz(name: str, *, validation_fraction: float, input_kind: str) -> DatasetSpec:
    """The dataset in the file that data.name='npz:<path>' points at."""
    path_text = name.removeprefix(NPZ_PREFIX)
    if not path_text:
        raise UserInputError(
            f"data.name={name!r} has no file path. Write it as 'npz:/path/to/file.npz'."
        )
    path = pathlib.Path(path_text).expanduser()
    split_arrays = dict(SPLIT_ARRAYS)
    arrays = _read_arrays(path)
    if VALIDATION_ARRAYS[0] in arrays:
        split_arrays["validation"] = VALIDATION_ARRAYS
    _check_arrays(path, arrays, split_arrays)

    splits = {split: ArraySplit(arrays[x], arrays[y]) for split, (x, y) in split_arrays.items()}
    if "validation" not in splits:
        splits["train"], splits["validation"] = split_off_validation(
            splits["train"], validation_fraction, what=f"npz file {path} (no x_val, y_val in it)"
        )
    x_train = arrays["x_train"]
    input_shape = resolve_input_shape(x_train.shape[1:], input_kind, what=f"x_train in {path}")
    divisor = 255.0 if x_train.dtype == np.uint8 else 1.0
    return DatasetSpec(
        name=name,
        splits=splits,
        preprocess=ScaleToFloat("input", input_shape, divisor),
        input_shape=input_shape,
        num_classes=max(int(arrays[y].max()) for _, y in split_arrays.values()) + 1,
        # uint8 pixels are divided by 255; float inputs' range is unknown.
        input_range=(0.0, 1.0) if divisor == 255.0 else None,
    )


def _read_arrays(path: pathlib.Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        problem = "is not a regular file" if path.exists() else "does not exist"
        raise UserInputError(
            f"npz file {path} (from data.name) {problem}. Fix the path in data.name."
        )
    save_hint = (
        "Save the data with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)."
    )
    try:
        archive = np.load(path, allow_pickle=False)
    except PermissionError as error:
        raise UserInputError(
            f"npz file {path} (from data.name) cannot be read ({error.strerror}); fix its "
            "permissions."
        ) from error
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UserInputError(
            f"{path} (from data.name) is not an .npz archive, or is truncated "
            f"({one_line(error)}). {save_hint}"
        ) from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserInputError(
            f"{path} (from data.name) is not an .npz archive but one .npy array. {save_hint}"
        )
    with archive:
        present = set(archive.files)
        wanted = [array for pair in SPLIT_ARRAYS.values() for array in pair]
        if present & set(VALIDATION_ARRAYS):
            wanted += VALIDATION_ARRAYS  # Both or neither: a lone x_val or y_val is a mistake.
        missing = [array for array in wanted if array not in present]
        if missing:
            raise UserInputError(
                f"npz file {path} lacks array(s) {', '.join(missing)}; it has "
                f"{', '.join(sorted(present)) or 'no arrays'}. Required: x_train, y_train, "
                "x_test, y_test; optional together: x_val, y_val."
            )
        return {array: _read_array(archive, array, path) for array in wanted}


def _read_array(archive: np.lib.npyio.NpzFile, array: str, path: pathlib.Path) -> np.ndarray:
    try:
        return archive[array]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        # allow_pickle=False: an object array is refused rather than unpickled (it could run code).
        fix = (
            "Store plain numeric arrays, not Python objects."
            if "allow_pickle" in str(error)
            else "The file is damaged (truncated or corrupt); save it again."
        )
        raise UserInputError(
            f"array {array} in npz file {path} (from data.name) cannot be read "
            f"({one_line(error)}). {fix}"
        ) from error


def _check_arrays(
    path: pathlib.Path, arrays: dict[str, np.ndarray], split_arrays: dict[str, tuple[str, str]]
) -> None:
    x_train = arrays["x_train"]
    for x_name, y_name in split_arrays.values():
        x, y = arrays[x_name], arrays[y_name]
        where = f"in npz file {path}"
        if x.ndim == 0 or x.dtype.kind not in "biuf":
            raise UserInputError(
                f"array {x_name} {where} has dtype {x.dtype} and shape {x.shape}; inputs must be "
                "a numeric array of shape (num_examples, ...)."
            )
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise UserInputError(
                f"array {y_name} {where} has dtype {y.dtype} and shape {y.shape}; labels must be "
                "integer class indices of shape (num_examples,). Convert with y.astype(np.int64)."
            )
        if len(x) != len(y):
            raise UserInputError(
                f"arrays {x_name} ({len(x)} examples) and {y_name} ({len(y)} labels) {where} "
                "differ in length; they need one label per example."
            )
        if len(y) == 0:
            raise UserInputError(
                f"arrays {x_name}, {y_name} {where} are empty; every split needs examples."
            )
        if y.min() < 0:
            raise UserInputError(
                f"array {y_name} {where} has negative label {y.min()}; labels must be class "
                "indices 0..num_classes-1."
            )
        if x.shape[1:] != x_train.shape[1:]:
            raise UserInputError(
                f"array {x_name} {where} has examples of shape {x.shape[1:]}, but x_train has "
                f"{x_train.shape[1:]}; every split needs the same per-example shape."
            )
        if (x.dtype == np.uint8) != (x_train.dtype == np.uint8):
            raise UserInputError(
                f"array {x_name} {where} is {x.dtype} but x_train is {x_train.dtype}; uint8 "
                "inputs are divided by 255 and others are not, so store every split with one dtype."
            )

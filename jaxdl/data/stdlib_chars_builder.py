"""A TFDS builder over the installed Python standard library's source: an offline text corpus.

Every `.py` file under the standard library (tests, IDLE, lib2to3, turtledemo, ensurepip and
site-packages left out) is read as UTF-8 bytes. Files are sorted by path and joined, each
preceded by a NUL byte (which Python source never contains) as a document marker; the joined
bytes are cut into non-overlapping records of CONTEXT + 1 bytes, so a record is a model input
(its first CONTEXT bytes) and its next-byte targets (its last CONTEXT). Validation and test are
fixed held-out modules, so they never overlap train. The corpus is the stdlib of the Python that
prepares it: DatasetInfo's description names that version.

Importing this module registers the builder with TFDS under BUILDER_NAME.
"""

import pathlib
import platform
import sysconfig
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

BUILDER_NAME = "stdlib_chars"
CONTEXT = 256
DOCUMENT_MARKER = b"\x00"
SKIPPED_PARTS = frozenset(
    {"test", "tests", "idle_test", "idlelib", "lib2to3", "turtledemo", "ensurepip"}
    | {"site-packages", "__pycache__"}
)
# Held-out modules, paths relative to the stdlib root; all exist in Python 3.11 to 3.13.
HELD_OUT = {
    "validation": ("argparse.py", "difflib.py", "fractions.py", "statistics.py", "textwrap.py"),
    "test": ("calendar.py", "dataclasses.py", "heapq.py", "pprint.py", "shlex.py", "string.py"),
}


def stdlib_root() -> pathlib.Path:
    return pathlib.Path(sysconfig.get_paths()["stdlib"])


def split_files(root: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    """The source files of each split, sorted by their path under `root`."""
    files = sorted(
        path for path in root.rglob("*.py") if not SKIPPED_PARTS & set(path.relative_to(root).parts)
    )
    held_out = {name for names in HELD_OUT.values() for name in names}
    splits = {"train": [p for p in files if str(p.relative_to(root)) not in held_out]}
    for split, names in HELD_OUT.items():
        missing = [name for name in names if not (root / name).is_file()]
        if missing:
            raise FileNotFoundError(f"held-out modules missing from {root}: {missing}")
        splits[split] = [root / name for name in names]
    return splits


def records(files: Sequence[pathlib.Path], context: int = CONTEXT) -> np.ndarray:
    """(num_records, context + 1) uint8: the marked, joined files cut into whole records."""
    joined = b"".join(DOCUMENT_MARKER + path.read_bytes() for path in files)
    count = len(joined) // (context + 1)
    data = np.frombuffer(joined[: count * (context + 1)], np.uint8)
    return data.reshape(count, context + 1)


class StdlibChars(tfds.core.GeneratorBasedBuilder):
    """The Python standard library's source as records of CONTEXT + 1 bytes."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = pathlib.Path(__file__)  # See digits_builder.py.

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                f"Python {platform.python_version()} standard library source, bytes in records "
                f"of {CONTEXT + 1}; held-out modules: {HELD_OUT}."
            ),
            features=tfds.features.FeaturesDict(
                {"bytes": tfds.features.Tensor(shape=(CONTEXT + 1,), dtype=np.uint8)}
            ),
            # Records stay in text order, so record i + 1 continues record i.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # Everything ships with Python.
        return {
            split: self._generate_examples(files)
            for split, files in split_files(stdlib_root()).items()
        }

    def _generate_examples(self, files: Sequence[pathlib.Path]) -> Iterator[tuple[int, dict]]:
        for index, record in enumerate(records(files)):
            yield index, {"bytes": record}

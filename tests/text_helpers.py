"""Small versions of jaxdl's own sequence builders, prepared once per test session.

The real builders take tens of seconds (50,000 examples per algorithmic task, the whole stdlib);
the tests need their structure, not their size: splits are cut to a few hundred examples and the
stdlib corpus comes from a small tree of generated modules.
"""

import pathlib

import pytest

from jaxdl.data import algorithmic_builder, stdlib_chars_builder
from jaxdl.data.datasets import load_dataset
from tests.data_helpers import data_config

SMALL_SPLITS = {"train": 256, "validation": 64, "test": 64}
SEQUENCE_DATASETS = ("stdlib_chars", "algorithmic/brackets", "algorithmic/reverse")


def fake_stdlib(root: pathlib.Path) -> pathlib.Path:
    """A stdlib-shaped tree: the held-out modules plus a few training modules of real Python."""
    for name in (
        *stdlib_chars_builder.HELD_OUT["validation"],
        *stdlib_chars_builder.HELD_OUT["test"],
    ):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n" + "def f(x):\n    return x + 1\n" * 30)
    for index in range(4):
        (root / f"module_{index}.py").write_text(
            "import os\n\n\ndef g(path):\n    return os.path.join(path, 'x')\n" * 60
        )
    return root


def prepare_small_sequence_data(data_dir: pathlib.Path, names=SEQUENCE_DATASETS) -> str:
    """Prepares the small builders into `data_dir` through the real loaders; returns it."""
    stdlib = fake_stdlib(data_dir.parent / "fake_stdlib")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(algorithmic_builder, "SPLIT_SIZES", SMALL_SPLITS)
        patch.setattr(stdlib_chars_builder, "stdlib_root", lambda: stdlib)
        for name in names:
            load_dataset(data_config(name, str(data_dir)))
    return str(data_dir)

"""The stdlib character corpus builder: fixed held-out modules, whole records, a real TFDS build."""

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data import stdlib_chars_builder as corpus
from jaxdl.data.tfds_sources import ARRAY_RECORD


def test_held_out_modules_are_not_in_train():
    splits = corpus.split_files(corpus.stdlib_root())
    train = set(splits["train"])
    assert len(train) > 300
    for split in ("validation", "test"):
        assert splits[split] and not train & set(splits[split])
    assert not set(splits["validation"]) & set(splits["test"])
    assert all("test" not in path.relative_to(corpus.stdlib_root()).parts for path in train)
    assert splits["train"] == sorted(splits["train"])


def test_records_join_marked_files_and_drop_the_tail(tmp_path):
    (tmp_path / "a.py").write_bytes(b"x = 1\n")
    (tmp_path / "b.py").write_bytes(b"y = 22\n")
    rows = corpus.records([tmp_path / "a.py", tmp_path / "b.py"], context=4)
    joined = b"\x00x = 1\n\x00y = 22\n"
    assert rows.shape == (len(joined) // 5, 5) and rows.dtype == np.uint8
    assert rows.tobytes() == joined[: rows.size]


def test_builder_prepares_and_reads_back(tmp_path, monkeypatch):
    root = tmp_path / "stdlib"
    for name in (*corpus.HELD_OUT["validation"], *corpus.HELD_OUT["test"]):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n" + "def f():\n    return 1\n" * 40)
    (root / "pkg").mkdir()
    (root / "pkg" / "mod.py").write_text("import os\n" * 300)
    (root / "test").mkdir()
    (root / "test" / "test_skipped.py").write_text("assert False\n" * 300)
    monkeypatch.setattr(corpus, "stdlib_root", lambda: root)

    data_dir = tmp_path / "tfds"
    builder = corpus.StdlibChars(data_dir=str(data_dir), file_format=ARRAY_RECORD)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    sources = tfds.data_source(
        corpus.BUILDER_NAME,
        split={"train": "train", "test": "test"},
        data_dir=str(data_dir),
        download=False,
    )
    train = np.stack([sources["train"][i]["bytes"] for i in range(len(sources["train"]))])
    assert train.shape == (3000 // (corpus.CONTEXT + 1), corpus.CONTEXT + 1)
    assert b"assert False" not in train.tobytes()  # The test package is left out.
    test_bytes = b"".join(
        sources["test"][i]["bytes"].tobytes() for i in range(len(sources["test"]))
    )
    assert test_bytes.startswith(b"\x00# calendar.py\n")

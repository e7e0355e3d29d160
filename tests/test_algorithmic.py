"""Seeded algorithmic tasks: what each example means, determinism, and a real TFDS build."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdl.data import algorithmic_builder as algo
from jaxdl.data.tfds_sources import ARRAY_RECORD


def _examples(task: str, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [algo.TASKS[task](rng) for _ in range(count)]


def test_sequence_tasks_mean_what_they_say():
    for source, target, _ in _examples("reverse", 50):
        assert target == source[::-1] and 10 <= len(source) <= 20
    for source, target, _ in _examples("sort", 20):
        assert target == bytes(sorted(source))
    for source, target, _ in _examples("copy", 20):
        assert target == source
    for source, target, _ in _examples("addition", 200):
        a, b = source.split(b"+")
        assert len(a) == len(b) == 5 and int(target) == int(a) + int(b) and len(target) == 6


def test_brackets_are_half_balanced_with_labels_that_match():
    examples = _examples("brackets", 2000)
    labels = [label for _, _, label in examples]
    assert 0.45 < np.mean(labels) < 0.55
    for source, _, label in examples:
        assert label == int(algo.is_balanced(source))
        assert 2 <= len(source) <= algo.MAX_LENGTH and set(source) <= set(algo.BRACKETS)
    assert algo.is_balanced(b"([])[]") and not algo.is_balanced(b"([)]")
    assert not algo.is_balanced(b"(()") and not algo.is_balanced(b"())(")


def test_same_seed_same_examples():
    assert _examples("addition", 5, seed=3) == _examples("addition", 5, seed=3)
    assert _examples("addition", 5, seed=3) != _examples("addition", 5, seed=4)


def test_builder_prepares_and_reads_back(tmp_path, monkeypatch):
    monkeypatch.setattr(algo, "SPLIT_SIZES", {"train": 30, "validation": 5, "test": 5})
    builder = algo.AlgorithmicTasks(
        config="reverse", data_dir=str(tmp_path), file_format=ARRAY_RECORD
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    test = tfds.data_source(
        f"{algo.BUILDER_NAME}/reverse", split="test", data_dir=str(tmp_path), download=False
    )
    assert len(test) == 5
    expected = _examples("reverse", 5, seed=algo.SPLIT_SEEDS["test"])
    for index, (source, target, _) in enumerate(expected):
        record = test[index]
        assert record["source"][: record["source_length"]].tobytes() == source
        assert record["target"][: record["target_length"]].tobytes() == target
        assert not record["source"][record["source_length"] :].any()


@pytest.mark.parametrize("task", list(algo.TASKS))
def test_every_example_fits(task):
    for source, target, _ in _examples(task, 300):
        assert len(source) <= algo.MAX_LENGTH and len(target) <= algo.MAX_LENGTH
        assert 0 not in source and 0 not in target

"""Imbalanced data: class weights, focal loss, the balanced sampler, long-tailed and seeded subsets."""

import jax
import numpy as np
import optax
import pytest

from jaxdl.data import train_iterator
from jaxdl.data.arrays import in_memory
from jaxdl.data.imbalance import (
    BalancedEpochs,
    apply_long_tail,
    class_counts,
    long_tail_counts,
    split_labels,
)
from jaxdl.data.npz_source import ArraySplit
from jaxdl.data.spec import DatasetSpec, ScaleToFloat
from jaxdl.data.subset import apply_subset
from jaxdl.tasks.class_balance import balanced_cross_entropy, class_weights
from tests.run_helpers import assert_stopped_run_resumes_identically
from tests.test_cli_errors import QUICK, assert_error, run_cli
from tests.test_cli_errors import train_quick as train


def skewed_spec(labels: list[int] | np.ndarray, num_classes: int = 3) -> DatasetSpec:
    """Example i has input i and label labels[i] in every split: which example was drawn shows."""
    labels = np.asarray(labels, np.int64)
    split = ArraySplit(np.arange(len(labels), dtype=np.float32)[:, None], labels)
    splits = {"train": split, "validation": split, "test": split}
    return DatasetSpec("skewed", splits, ScaleToFloat("input", (1,)), (1,), num_classes)


# 80 examples of class 0, 15 of class 1, 5 of class 2.
SKEWED = [0] * 80 + [1] * 15 + [2] * 5


@pytest.fixture(params=["stream", "memory"])
def pipeline(request) -> str:
    """Sampler tests run on both paths: Grain over records, and decoded arrays."""
    return request.param


def drawn(iterator, batches: int) -> np.ndarray:
    """The example indices (their inputs) of the next `batches` batches, one row per batch."""
    return np.stack([next(iterator)["input"][:, 0].astype(np.int64) for _ in range(batches)])


# Losses.


def test_class_weights_on_hand_computed_counts():
    # Inverse: 1/n = (1, 1/3), sum 4/3; mean 1 over two classes -> (1.5, 0.5).
    np.testing.assert_allclose(class_weights(np.array([1, 3]), "inverse"), [1.5, 0.5], rtol=1e-6)
    # Effective, beta 0.5: (1 - b) / (1 - b^n) = (1, 2/3), sum 5/3 -> (1.2, 0.8).
    np.testing.assert_allclose(
        class_weights(np.array([1, 2]), "effective", beta=0.5), [1.2, 0.8], rtol=1e-6
    )
    # A class with no train examples is never a target: weight 0, the others keep mean 1.
    np.testing.assert_allclose(class_weights(np.array([2, 0, 2]), "inverse"), [1, 0, 1])
    # Effective weights tend to inverse frequency as beta -> 1 and to uniform as beta -> 0.
    counts = np.array([100, 10, 1])
    near_inverse = class_weights(counts, "effective", beta=0.99999)
    np.testing.assert_allclose(near_inverse, class_weights(counts, "inverse"), rtol=1e-3)
    np.testing.assert_allclose(class_weights(counts, "effective", beta=1e-6), [1, 1, 1], rtol=1e-5)


def test_focal_loss_against_a_hand_computed_value():
    # p = softmax(0, ln 3) = (0.25, 0.75); true class 1: CE = -ln 0.75, focal = 0.25^2 * CE.
    logits = np.array([[0.0, np.log(3.0)]], np.float32)
    target = np.array([[0.0, 1.0]], np.float32)
    ce = -np.log(0.75)
    np.testing.assert_allclose(balanced_cross_entropy(logits, target), [ce], rtol=1e-6)
    focal = balanced_cross_entropy(logits, target, focal_gamma=2.0)
    np.testing.assert_allclose(focal, [0.0625 * ce], rtol=1e-5)
    weighted = balanced_cross_entropy(logits, target, np.array([1.5, 0.5]), focal_gamma=2.0)
    np.testing.assert_allclose(weighted, [0.5 * 0.0625 * ce], rtol=1e-5)


def test_at_gamma_0_without_weights_it_is_cross_entropy_with_smoothed_targets():
    logits = jax.random.normal(jax.random.PRNGKey(0), (6, 5)) * 3
    targets = optax.smooth_labels(jax.nn.one_hot(np.arange(6) % 5, 5), 0.1)
    np.testing.assert_allclose(
        balanced_cross_entropy(logits, targets),
        optax.softmax_cross_entropy(logits, targets),
        rtol=1e-6,
    )
    # Its gradient stays finite where the model is certain, also for gamma < 1.
    certain = np.array([[50.0, -50.0]], np.float32)
    grad = jax.grad(lambda x: balanced_cross_entropy(x, np.array([[1.0, 0.0]]), None, 0.5)[0])
    assert np.all(np.isfinite(grad(certain)))


# The balanced sampler.


def test_balanced_sampler_draws_every_class_equally_and_examples_uniformly(pipeline):
    spec = in_memory(skewed_spec(SKEWED), pipeline)
    iterator = train_iterator(spec, batch_size=100, seed=0, sampler="balanced")
    indices = drawn(iterator, 300).ravel()  # 30,000 draws: 300 epochs of 100.
    iterator.close()
    labels = np.asarray(SKEWED)[indices]
    np.testing.assert_allclose(np.bincount(labels) / len(labels), [1 / 3] * 3, atol=0.015)
    # Within class 2 (5 examples) each is one fifth of its draws.
    rare = np.bincount(indices[labels == 2], minlength=100)[95:]
    np.testing.assert_allclose(rare / rare.sum(), [0.2] * 5, atol=0.025)
    # Uniform sampling sees class 2 as often as it is in the data: 5%.
    uniform = train_iterator(spec, batch_size=100, seed=0)
    labels = np.asarray(SKEWED)[drawn(uniform, 3).ravel()]
    np.testing.assert_allclose(np.bincount(labels) / len(labels), [0.8, 0.15, 0.05])
    uniform.close()


def test_balanced_draws_are_fixed_by_the_seed_and_the_same_in_both_pipelines():
    memory, stream = (in_memory(skewed_spec(SKEWED), p) for p in ("memory", "stream"))
    first, same, streamed, other = (
        train_iterator(spec, batch_size=8, seed=seed, sampler="balanced")
        for spec, seed in ((memory, 4), (memory, 4), (stream, 4), (memory, 5))
    )
    batches = drawn(first, 30)
    np.testing.assert_array_equal(batches, drawn(same, 30))
    np.testing.assert_array_equal(batches, drawn(streamed, 30))
    assert not np.array_equal(batches, drawn(other, 30))
    # Every epoch draws afresh: epoch 1 (draws 100..199) is not epoch 0 again.
    assert not np.array_equal(batches.ravel()[:100], batches.ravel()[100:200])
    for iterator in (first, same, streamed, other):
        iterator.close()


def test_balanced_sampler_resumes_exactly_from_a_state_saved_mid_epoch(pipeline):
    spec = in_memory(skewed_spec(SKEWED), pipeline)
    iterator = train_iterator(spec, batch_size=8, seed=3, sampler="balanced")
    drawn(iterator, 7)  # 56 of an epoch's 100 draws: the next batches cross into epoch 1.
    state = iterator.get_state()
    expected = drawn(iterator, 10)
    restored = train_iterator(spec, batch_size=8, seed=3, sampler="balanced")
    restored.set_state(state)
    np.testing.assert_array_equal(drawn(restored, 10), expected)
    iterator.close()
    restored.close()


def test_each_process_reads_its_slice_of_the_balanced_global_batch(pipeline):
    spec = in_memory(skewed_spec(SKEWED), pipeline)
    whole = train_iterator(spec, batch_size=8, seed=2, sampler="balanced")
    shards = [
        train_iterator(spec, batch_size=4, seed=2, shard_index=i, shard_count=2, sampler="balanced")
        for i in range(2)
    ]
    expected = drawn(whole, 5)
    np.testing.assert_array_equal(np.concatenate([drawn(s, 5) for s in shards], axis=1), expected)
    for iterator in (whole, *shards):
        iterator.close()


def test_balanced_epochs_pickle_to_the_same_draws():
    import pickle

    epochs = BalancedEpochs(np.asarray(SKEWED))
    copy = pickle.loads(pickle.dumps(epochs))
    np.testing.assert_array_equal(epochs(7, 3, 100), copy(7, 3, 100))


# Long-tailed and seeded subsets.


def test_long_tail_counts_on_a_hand_computed_case():
    # Ratio 4 over 3 classes: 4^(-k/2) = 1, 1/2, 1/4 of n_max = 10.
    np.testing.assert_array_equal(long_tail_counts(np.array([10, 10, 10]), 4.0), [10, 5, 2])
    # A class never grows past what it has, and keeps at least one example.
    np.testing.assert_array_equal(long_tail_counts(np.array([10, 3, 10]), 100.0), [10, 1, 1])
    spec = skewed_spec([0, 1, 2] * 10)
    tail = apply_long_tail(spec, {"imbalance_ratio": 4.0})
    np.testing.assert_array_equal(class_counts(tail, "test"), [10, 5, 2])
    # The first examples of each class by default; validation and test are untouched.
    kept = tail.splits["train"].indices
    np.testing.assert_array_equal(kept[split_labels(tail) == 1], [1, 4, 7, 10, 13])
    assert tail.splits["validation"] is spec.splits["validation"]
    assert apply_long_tail(spec, {"imbalance_ratio": 1.0}) is spec


def test_seeded_choices_are_deterministic_and_differ_between_seeds():
    spec = skewed_spec([0, 1, 2] * 10)

    def kept(**fields) -> np.ndarray:
        subset = apply_long_tail(apply_subset(spec, fields), fields)
        return np.asarray(subset.splits["train"].indices)

    seeded = kept(imbalance_ratio=4.0, subset_seed=1)
    np.testing.assert_array_equal(seeded, kept(imbalance_ratio=4.0, subset_seed=1))
    assert not np.array_equal(seeded, kept(imbalance_ratio=4.0, subset_seed=2))
    assert not np.array_equal(seeded, kept(imbalance_ratio=4.0))  # -1: the first ones.
    assert np.bincount(np.asarray([0, 1, 2] * 10)[seeded]).tolist() == [10, 5, 2]
    # train_examples_per_class: first N by default (as before), a seeded N with subset_seed.
    first = kept(train_examples_per_class=3)
    np.testing.assert_array_equal(first, [0, 1, 2, 3, 4, 5, 6, 7, 8])
    chosen = kept(train_examples_per_class=3, subset_seed=0)
    np.testing.assert_array_equal(chosen, kept(train_examples_per_class=3, subset_seed=0))
    assert not np.array_equal(chosen, first) and len(chosen) == 9


# Whole runs.


def test_balanced_weighted_focal_run_resumes_bit_exactly(tmp_path, monkeypatch, capsys):
    options = (
        "--config.data.imbalance_ratio=10",
        "--config.data.sampler=balanced",
        "--config.task.class_weighting=effective",
        "--config.task.focal_gamma=2",
        "--config.train.checkpoint_every=10",
    )
    whole = assert_stopped_run_resumes_identically(
        lambda workdir: train(workdir, *options), tmp_path, monkeypatch, capsys, at_step=25
    )
    assert np.isfinite(whole["final_metrics"]["test/accuracy"])


@pytest.mark.parametrize(
    "override, words",
    [
        ("--config.task.class_weighting=square", ("config.task.class_weighting", "'square'")),
        ("--config.task.class_weighting_beta=1.0", ("config.task.class_weighting_beta",)),
        ("--config.data.sampler=oversample", ("config.data.sampler", "balanced")),
        ("--config.data.imbalance_ratio=0.5", ("config.data.imbalance_ratio", ">= 1")),
        ("--config.task.focal_gamma=-1.0", ("config.task.focal_gamma", ">= 0")),
        ("--config.data.subset_seed=-2", ("config.data.subset_seed",)),
    ],
)
def test_bad_values_exit_2_before_the_workdir_is_written(capsys, tmp_path, override, words):
    workdir = tmp_path / "w"
    code, _, err = run_cli(capsys, "train", "--config", QUICK, "--workdir", str(workdir), override)
    assert_error(code, err, *words)
    assert len(err.strip().splitlines()) == 1, err
    assert not workdir.exists()


def test_sampler_on_a_dataset_without_class_labels_exits_2(capsys, tmp_path, sequence_data_dir):
    workdir = tmp_path / "w"
    code, _, err = run_cli(
        capsys,
        "train",
        "--config",
        "experiments/reverse_t5.py:quick",
        "--workdir",
        str(workdir),
        f"--config.data.data_dir={sequence_data_dir}",
        "--config.data.sampler=balanced",
    )
    assert_error(code, err, "data.sampler='balanced'", "classification dataset")
    assert not workdir.exists()


def test_digits_longtail_weights_come_from_the_long_tailed_train_split(digits_dir):
    from jaxdl import data, tasks
    from tests.run_helpers import experiment_config

    config = experiment_config("digits_longtail", "", digits_dir)
    config.task.class_weighting = "inverse"
    dataset = data.load_dataset(config.data)
    counts = class_counts(dataset, "test")
    np.testing.assert_array_equal(counts, [124, 82, 53, 34, 22, 14, 9, 6, 3, 2])
    # Only train changes: validation keeps 18 of each digit.
    np.testing.assert_array_equal(np.bincount(split_labels(dataset, "validation")), [18] * 10)
    task = tasks.build_task(config, dataset)
    expected = (1 / counts) / np.mean(1 / counts)
    np.testing.assert_allclose(task.balance.weights, expected, rtol=1e-5)
    assert task.balance.focal_gamma == 0.0
    config.task.class_weighting = "none"
    assert tasks.build_task(config, dataset).balance is None

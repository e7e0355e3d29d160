"""Evaluation beyond accuracy (tasks/classification_metrics.py, engine/run_report.py): per-class
precision, recall and F1, macro-F1, balanced accuracy, ECE and temperature scaling, from sums
that add up over batches; the report in every classifier run's summary.json and `jaxdl eval`."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from sklearn import metrics as sk_metrics

from jaxdl.tasks import classification_metrics as cm
from jaxdl.tasks.classification import ClassificationTask
from jaxdl.tasks.state import TrainState
from tests.test_cli_errors import QUICK, assert_error, run_cli, snapshot

# Rows: true class, columns: predicted. Class 2 is never predicted; class 3 is absent from the
# labels but predicted twice; class 4 is neither (it must not count in the macro averages).
CONFUSION = np.array(
    [
        [3, 1, 0, 1, 0],
        [1, 2, 0, 0, 0],
        [0, 1, 0, 1, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
)


def _labels_of(confusion: np.ndarray) -> tuple[list[int], list[int]]:
    truth, predicted = [], []
    for t, p in zip(*np.nonzero(confusion), strict=True):
        truth += [t] * confusion[t, p]
        predicted += [p] * confusion[t, p]
    return truth, predicted


def test_per_class_scores_by_hand():
    scores = cm.per_class(CONFUSION)
    np.testing.assert_allclose(scores["precision"], [3 / 4, 2 / 4, 0, 0, 0])
    np.testing.assert_allclose(scores["recall"], [3 / 5, 2 / 3, 0, 0, 0])
    np.testing.assert_allclose(scores["f1"], [2 / 3, 4 / 7, 0, 0, 0])
    np.testing.assert_allclose(scores["support"], [5, 3, 2, 0, 0])
    assert cm.macro_f1(CONFUSION) == pytest.approx((2 / 3 + 4 / 7) / 4)  # Classes 0..3.
    assert cm.balanced_accuracy(CONFUSION) == pytest.approx((3 / 5 + 2 / 3 + 0) / 3)  # 0..2.


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
def test_scores_agree_with_scikit_learn():
    truth, predicted = _labels_of(CONFUSION)
    assert cm.macro_f1(CONFUSION) == pytest.approx(
        sk_metrics.f1_score(truth, predicted, average="macro", zero_division=0)
    )
    assert cm.balanced_accuracy(CONFUSION) == pytest.approx(
        sk_metrics.balanced_accuracy_score(truth, predicted)
    )
    sk_precision, sk_recall, sk_f1, _ = sk_metrics.precision_recall_fscore_support(
        truth, predicted, labels=range(5), zero_division=0
    )
    scores = cm.per_class(CONFUSION)
    np.testing.assert_allclose(scores["precision"], sk_precision)
    np.testing.assert_allclose(scores["recall"], sk_recall)
    np.testing.assert_allclose(scores["f1"], sk_f1)


def _binary_logits(confidences: list[float], predicted: list[int]) -> np.ndarray:
    """Two-class logits whose softmax gives `confidence` to class `predicted`."""
    rows = []
    for p, c in zip(predicted, confidences, strict=True):
        row = [math.log(1 - c), math.log(1 - c)]
        row[p] = math.log(c)
        rows.append(row)
    return np.array(rows, np.float32)


def test_ece_by_hand():
    # Confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.55 (right): bins 13, 13, 9 and 8.
    logits = _binary_logits([0.9, 0.9, 0.6, 0.55], [0, 0, 1, 0])
    labels = np.array([0, 1, 1, 0])
    sums = cm.eval_sums(jnp.asarray(logits), jnp.asarray(labels), jnp.ones(4), 2)
    bins = np.asarray(sums["calibration_bins"][cm.UNSCALED])
    np.testing.assert_allclose(bins[0][[8, 9, 13]], [1, 1, 2])
    assert bins[0].sum() == 4
    expected = 2 / 4 * abs(0.5 - 0.9) + 1 / 4 * abs(1 - 0.6) + 1 / 4 * abs(1 - 0.55)
    assert cm.expected_calibration_error(bins) == pytest.approx(expected, abs=1e-6)
    # The unscaled NLL is the mean of -log p(label).
    nll = -(math.log(0.9) + math.log(0.1) + math.log(0.6) + math.log(0.55))
    assert float(sums["temperature_nll"][cm.UNSCALED]) == pytest.approx(nll, rel=1e-5)
    assert cm.TEMPERATURES[cm.UNSCALED] == 1.0


def _calibrated(rng: np.random.Generator, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from the logits' own softmax: a perfectly calibrated model."""
    logits = rng.normal(0.0, 2.0, (n, classes)).astype(np.float32)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, labels


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    validation = _calibrated(rng, 20000, 10)
    test = _calibrated(rng, 20000, 10)
    sums = {
        name: cm.eval_sums(jnp.asarray(logits * 3.0), jnp.asarray(labels), jnp.ones(20000), 10)
        for name, (logits, labels) in (("validation", validation), ("test", test))
    }
    report = cm.report(sums["validation"], sums["test"], "test")
    calibration = report["calibration"]
    assert calibration["temperature"] == pytest.approx(3.0, rel=0.05)
    assert calibration["validation_nll_after"] < calibration["validation_nll_before"]
    before, after = calibration["before"], calibration["after"]
    assert after["nll"] < before["nll"] and after["ece"] < 0.02 < before["ece"]
    assert sum(b["count"] for b in after["reliability"]) == 20000


def test_sums_of_two_half_batches_equal_the_whole_batch():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(0, 3, (64, 7)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 7, 64))
    weights = jnp.asarray((rng.random(64) > 0.2).astype(np.float32))  # Padding rows: weight 0.
    whole = cm.eval_sums(logits, labels, weights, 7)
    halves = [
        cm.eval_sums(logits[s], labels[s], weights[s], 7) for s in (slice(0, 32), slice(32, 64))
    ]
    for name in cm.ARRAY_SUMS:
        np.testing.assert_allclose(halves[0][name] + halves[1][name], whole[name], rtol=1e-5)
    assert float(whole["confusion"].sum()) == float(weights.sum())


class _PerStep(nn.Module):
    """(B, T, F) -> per-step logits (B, T, C); takes the lengths as a sequence model does."""

    classes: int

    @nn.compact
    def __call__(self, x, train=False, lengths=None):
        del train, lengths
        return nn.Dense(self.classes)(x)


def test_per_step_labels_count_only_the_steps_inside_each_length():
    task = ClassificationTask(_PerStep(4), optax.sgd(0.1), optax.constant_schedule(0.1), 4)
    rng = np.random.default_rng(2)
    batch = {
        "input": jnp.asarray(rng.normal(size=(3, 5, 6)).astype(np.float32)),
        "label": jnp.asarray(rng.integers(0, 4, (3, 5))),
        "length": jnp.asarray([5, 2, 3]),
        "mask": jnp.asarray([1.0, 1.0, 0.0]),  # The third sequence is padding.
    }
    state = task.init_state(jax.random.key(0), batch)
    assert isinstance(state, TrainState)
    sums = jax.device_get(task.eval_step(state, batch))
    assert float(sums["count"]) == 7.0 == float(np.sum(sums["confusion"]))
    assert float(np.sum(sums["calibration_bins"][cm.UNSCALED][0])) == 7.0
    metrics = task.finalize_eval({k: np.asarray(v) for k, v in sums.items()})
    assert set(metrics) == {"loss", "accuracy", *cm.SCALAR_METRICS}
    assert metrics["accuracy"] == pytest.approx(np.trace(sums["confusion"]) / 7.0)


# A quick digits_mlp run (conftest's finished_run), and `jaxdl eval` on copies of it.


def test_every_classifier_run_writes_the_report(finished_run):
    summary = json.loads((finished_run / "summary.json").read_text())
    report = summary["classification_report"]
    assert report["split"] == "test" and len(report["per_class"]) == 10
    confusion = np.array(report["confusion_matrix"])
    assert confusion.sum() == report["count"] == 360  # The digits test split.
    assert report["accuracy"] == pytest.approx(summary["final_metrics"]["test/accuracy"])
    assert report["macro_f1"] == pytest.approx(summary["final_metrics"]["test/macro_f1"])
    calibration = report["calibration"]
    assert calibration["temperature"] in cm.TEMPERATURES
    assert calibration["validation_nll_after"] <= calibration["validation_nll_before"]
    assert calibration["before"]["ece"] == pytest.approx(summary["final_metrics"]["test/ece"])
    for name in ("confusion_matrix.png", "reliability.png"):
        assert (finished_run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # metrics.jsonl stays scalar, with the cheap scores in every evaluation.
    records = [
        json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()
    ]
    val = [r for r in records if r["split"] == "val"]
    assert val and all(isinstance(r[n], float) for r in val for n in cm.SCALAR_METRICS)
    assert not any(name in r for r in records for name in cm.ARRAY_SUMS)


def test_eval_prints_the_report_and_writes_it_with_out(capsys, run_dir, tmp_path):
    summary = json.loads((run_dir / "summary.json").read_text())
    code, out, err = run_cli(capsys, "eval", "--workdir", str(run_dir))
    assert code == 0, err
    printed = json.loads(out)
    assert {"step", "split", "accuracy", "loss", "macro_f1", "balanced_accuracy", "ece"} <= set(
        printed
    )
    expected = summary["classification_report"]
    report = printed["classification_report"]
    assert report["confusion_matrix"] == expected["confusion_matrix"]
    assert report["calibration"]["temperature"] == expected["calibration"]["temperature"]

    out_dir = tmp_path / "report"
    code, out, err = run_cli(capsys, "eval", "--workdir", str(run_dir), "--out", str(out_dir))
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "confusion_matrix.png",
        "reliability.png",
        "report.json",
    ]
    written = json.loads((out_dir / "report.json").read_text())
    assert written["classification_report"]["per_class"] == report["per_class"]

    code, out, err = run_cli(capsys, "eval", "--workdir", str(run_dir), "--split", "validation")
    assert code == 0, err
    assert json.loads(out)["classification_report"]["split"] == "validation"


def test_eval_bad_input_exits_2_and_changes_nothing(capsys, run_dir, tmp_path):
    out_dir = tmp_path / "taken"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "eval", "--workdir", str(run_dir), "--out", str(out_dir))
    assert_error(code, err, "--out", "not empty")
    a_file = tmp_path / "taken" / "keep.txt"
    code, _, err = run_cli(capsys, "eval", "--workdir", str(run_dir), "--out", str(a_file))
    assert_error(code, err, "--out", "is a file")
    code, _, err = run_cli(capsys, "eval", "--workdir", str(tmp_path / "missing"))
    assert_error(code, err, "missing")
    assert snapshot(tmp_path) == before


def test_new_scores_can_be_monitored_and_arrays_cannot(capsys, finished_run, tmp_path):
    from jaxdl import config as config_lib
    from jaxdl.engine import workdir
    from jaxdl.engine.setup import setup

    config = config_lib.with_default_layout(workdir.load_config(finished_run))
    names = setup(config).eval_metric_names
    assert set(cm.SCALAR_METRICS) <= set(names) and not set(cm.ARRAY_SUMS) & set(names)
    run = tmp_path / "run"
    argv = ["train", "--config", QUICK, "--workdir", str(run), "--config.train.monitor=confusion"]
    code, _, err = run_cli(capsys, *argv)
    assert_error(code, err, "train.monitor", "macro_f1", "ece")
    assert not run.exists()

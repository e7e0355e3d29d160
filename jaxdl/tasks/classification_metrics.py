"""Classifier evaluation beyond accuracy: per-class precision, recall and F1, macro-F1, balanced
accuracy, expected calibration error (ECE) and temperature scaling.

Evaluation is one pass whose outputs add up over batches, devices and hosts, so `eval_sums`
returns sums only: a (C, C) confusion-count array, and, for each temperature of a fixed
log-spaced grid, the summed negative log-likelihood and per-confidence-bin (count, confidence
sum, correct sum). Everything else is computed from those sums on the host (numpy).

The temperature of temperature scaling is the grid point with the lowest validation NLL. The grid
(0.25 to 8, 16 points per doubling, 1.0 included) puts every temperature in that range within
2.2% of a grid point; a finer fit would need per-example logits, which a summable pass does not
keep.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

NUM_BINS = 15  # Equal-width confidence bins of the ECE and the reliability diagram.
TEMPERATURES = 2.0 ** (np.arange(81) / 16 - 2)  # 0.25 ... 8; index 32 is exactly 1.0.
UNSCALED = 32
# The array sums eval_sums returns (the rest of an eval step's outputs are scalar sums).
ARRAY_SUMS = ("confusion", "temperature_nll", "calibration_bins")
# The scalars scalar_metrics adds to the logged eval metrics.
SCALAR_METRICS = ("macro_f1", "balanced_accuracy", "ece")


def eval_sums(
    logits: jax.Array, labels: jax.Array, weights: jax.Array, num_classes: int
) -> dict[str, jax.Array]:
    """The summable sums of one batch: logits (..., C), integer labels (...) and weights (...)
    (0 for padding and for steps past a sequence's length)."""
    logits = logits.reshape(-1, num_classes).astype(jnp.float32)
    labels = labels.reshape(-1)
    weights = weights.reshape(-1).astype(jnp.float32)
    predicted = jnp.argmax(logits, -1)
    correct = (predicted == labels).astype(jnp.float32)
    truth = jax.nn.one_hot(labels, num_classes) * weights[:, None]
    confusion = truth.T @ jax.nn.one_hot(predicted, num_classes)

    def at_temperature(temperature: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_probs = jax.nn.log_softmax(logits / temperature)
        nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
        # where, not a product: a padded row's label may be out of range (nll inf, weight 0).
        nll_sum = jnp.sum(jnp.where(weights > 0, nll * weights, 0.0))
        confidence = jnp.exp(jnp.max(log_probs, -1))
        bins = jnp.clip(jnp.floor(confidence * NUM_BINS), 0, NUM_BINS - 1).astype(jnp.int32)
        in_bin = jax.nn.one_hot(bins, NUM_BINS) * weights[:, None]  # (N, NUM_BINS)
        per_bin = jnp.stack([in_bin.sum(0), confidence @ in_bin, correct @ in_bin])
        return nll_sum, per_bin

    # One temperature at a time: memory stays that of one batch's probabilities.
    nll, per_bin = jax.lax.map(at_temperature, jnp.asarray(TEMPERATURES, jnp.float32))
    return {"confusion": confusion, "temperature_nll": nll, "calibration_bins": per_bin}


def per_class(confusion: Any) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows: true class,
    columns: predicted). Undefined ratios (a class never predicted, or absent) are 0, as in
    scikit-learn's zero_division=0."""
    confusion = np.asarray(confusion, np.float64)
    hits = np.diag(confusion)
    support = confusion.sum(1)
    predicted = confusion.sum(0)
    precision = _ratio(hits, predicted)
    recall = _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def macro_f1(confusion: Any) -> float:
    """The mean F1 over the classes that occur in the labels or the predictions (scikit-learn's
    default labels): a class absent from a split and never predicted does not count."""
    confusion = np.asarray(confusion, np.float64)
    seen = (confusion.sum(0) + confusion.sum(1)) > 0
    return float(per_class(confusion)["f1"][seen].mean()) if seen.any() else 0.0


def balanced_accuracy(confusion: Any) -> float:
    """The mean recall over the classes present in the labels."""
    confusion = np.asarray(confusion, np.float64)
    present = confusion.sum(1) > 0
    return float(per_class(confusion)["recall"][present].mean()) if present.any() else 0.0


def expected_calibration_error(bins: Any) -> float:
    """ECE from per-bin sums (3, NUM_BINS): count, confidence sum, correct sum. The
    count-weighted mean over bins of |accuracy - mean confidence|."""
    count, confidence, correct = np.asarray(bins, np.float64)
    total = count.sum()
    return float(np.abs(correct - confidence).sum() / total) if total > 0 else 0.0


def fit_temperature(temperature_nll: Any) -> int:
    """The index into TEMPERATURES of the lowest summed validation NLL."""
    return int(np.argmin(np.asarray(temperature_nll, np.float64)))


def scalar_metrics(sums: dict[str, Any]) -> dict[str, float]:
    """The cheap scalars logged with every evaluation (ECE unscaled, at temperature 1)."""
    return {
        "macro_f1": macro_f1(sums["confusion"]),
        "balanced_accuracy": balanced_accuracy(sums["confusion"]),
        "ece": expected_calibration_error(sums["calibration_bins"][UNSCALED]),
    }


def report(validation: dict[str, Any], split: dict[str, Any], split_name: str) -> dict[str, Any]:
    """The full report of one split's sums, with the temperature fitted on validation's."""
    confusion = np.asarray(split["confusion"], np.float64)
    classes = per_class(confusion)
    count = float(confusion.sum())
    fitted = fit_temperature(validation["temperature_nll"])
    validation_count = float(np.asarray(validation["confusion"]).sum())
    return {
        "split": split_name,
        "count": count,
        "accuracy": float(np.trace(confusion) / count) if count else 0.0,
        "macro_f1": macro_f1(confusion),
        "balanced_accuracy": balanced_accuracy(confusion),
        "per_class": [
            {
                "class": index,
                **{name: float(values[index]) for name, values in classes.items()},
            }
            for index in range(confusion.shape[0])
        ],
        "confusion_matrix": confusion.tolist(),  # Rows: true class; columns: predicted.
        "calibration": {
            "bins": NUM_BINS,
            "temperature": float(TEMPERATURES[fitted]),
            "temperature_fitted_on": "validation",
            "validation_nll_before": _mean(
                validation["temperature_nll"][UNSCALED], validation_count
            ),
            "validation_nll_after": _mean(validation["temperature_nll"][fitted], validation_count),
            "before": _calibration(split, UNSCALED, count),
            "after": _calibration(split, fitted, count),
        },
    }


def _calibration(sums: dict[str, Any], index: int, count: float) -> dict[str, Any]:
    bin_count, confidence, correct = np.asarray(sums["calibration_bins"][index], np.float64)
    edges = np.linspace(0.0, 1.0, NUM_BINS + 1)
    return {
        "temperature": float(TEMPERATURES[index]),
        "ece": expected_calibration_error(sums["calibration_bins"][index]),
        "nll": _mean(sums["temperature_nll"][index], count),
        "reliability": [
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": float(bin_count[b]),
                "confidence": _mean(confidence[b], bin_count[b]),
                "accuracy": _mean(correct[b], bin_count[b]),
            }
            for b in range(NUM_BINS)
        ],
    }


def _mean(total: Any, count: float) -> float:
    return float(total) / float(count) if count else 0.0


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)

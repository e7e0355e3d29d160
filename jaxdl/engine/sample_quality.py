"""Sample quality without the internet: the Fréchet distance between two sets of features.

The features come from the penultimate layer of a classifier this codebase trained on the same
data (issue 11), not from a downloaded Inception network, so the figures compare models trained
here with each other and with two references measured the same way: held-out real images (the
floor) and per-pixel Gaussian noise matched to the data's mean and variance (the ceiling a model
must stay well below).

A generative experiment turns it on with a `sample_quality` section (`config_fields`); the
classifier comes from `sample_quality.classifier_workdir`, or, when that is '', from training
the experiment `sample_quality.classifier_config` once and caching it (jaxdl/feature_classifier.py).
The run then reports `fd` (and `class_accuracy` for conditional models) at every evaluation, so
`train.monitor='fd'` picks the best checkpoint by it (engine/quality_monitor.py).
"""

import os
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from jaxdl.errors import UserInputError

FD_METRIC, ACCURACY_METRIC = "fd", "class_accuracy"
CACHE_ENV = "JAXDL_CACHE_DIR"  # Where classifiers trained on the fly are kept.


def config_fields(
    classifier_config: str = "digits_cnn", *overrides: str
) -> ml_collections.ConfigDict:
    """The `sample_quality` section a generative experiment adds to its config."""
    return ml_collections.ConfigDict(
        {
            # A finished classification run on the same data; '' trains `classifier_config`.
            "classifier_workdir": "",
            # Experiment (name or path, ':quick' allowed) trained once and cached when needed.
            "classifier_config": classifier_config,
            # Its --config.x=y overrides, e.g. ("--config.data.name=mnist",).
            "classifier_overrides": tuple(overrides),
            # Images compared per distance; 0: as many as the test split has (at most 10,000).
            "num_samples": 0,
        }
    )


def enabled(config: ml_collections.ConfigDict, generates_images: bool) -> bool:
    return generates_images and config.get("sample_quality") is not None


def metric_names(config: ml_collections.ConfigDict, task: Any) -> tuple[str, ...]:
    """The validation metrics sample quality adds for this config's task (none when off)."""
    if not enabled(config, task.generates_images):
        return ()
    return (FD_METRIC, ACCURACY_METRIC) if task.conditional else (FD_METRIC,)


def check_fields(section: ml_collections.ConfigDict) -> None:
    num = section.get("num_samples", 0)
    if isinstance(num, bool) or not isinstance(num, int) or num < 0 or num == 1:
        raise UserInputError(
            f"sample_quality.num_samples={num!r} must be 0 (the test split's size) or >= 2."
        )
    for field in ("classifier_workdir", "classifier_config"):
        if not isinstance(section.get(field, ""), str):
            raise UserInputError(f"sample_quality.{field} must be a string.")
    if not section.get("classifier_workdir") and not section.get("classifier_config"):
        raise UserInputError(
            "sample_quality: set classifier_workdir (a finished classification run on the same "
            "data) or classifier_config (an experiment to train one from, e.g. digits_cnn)."
        )


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "jaxdl")


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of (N, D) features, in float64; N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D); got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], -1)


def frechet_distance(
    stats_a: tuple[np.ndarray, np.ndarray], stats_b: tuple[np.ndarray, np.ndarray]
) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two Gaussians (Dowson and
    Landau 1982; the FID of Heusel et al. 2017 on other features).

    Tr((S_a S_b)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the
    symmetric matrix S_a^(1/2) S_b S_a^(1/2), which has the same eigenvalues as S_a S_b but,
    unlike it, stays symmetric in floating point, so no complex square root is needed.
    """
    (mean_a, cov_a), (mean_b, cov_b) = stats_a, stats_b
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))  # Rounding can leave -1e-12 for equal sets.

"""Sample quality of a generative run, measured at every evaluation and at the end.

A classifier trained by this codebase on the same data turns images into features: the inputs
of its last dense layer (the penultimate features, read with a Flax method interceptor, so any
classification model works). Its train split gives the reference statistics. Each measurement
compares `num` images with them by the Fréchet distance (engine/sample_quality.py):
  - `fd`: the model's samples (fixed keys, so evaluations compare across steps);
  - `fd_floor`: the test split's real images, which no model can be expected to beat;
  - `fd_noise`: per-pixel Gaussian noise with the train split's per-pixel mean and standard
    deviation, clipped to the pixel range [0, 1], a baseline any model must beat by far.
The same number of images enters every distance: the estimate's small-sample bias is then the
same for all three. For conditional models, `class_accuracy` is the share of samples asked for
class k that the classifier calls k.
"""

from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.engine import evaluation, sample_quality, sharding
from jaxdl.engine.sample_quality import (
    ACCURACY_METRIC,
    FD_METRIC,
    frechet_distance,
    gaussian_statistics,
)
from jaxdl.engine.setup import Setup
from jaxdl.errors import UserInputError

MAX_IMAGES = 10_000  # Per set: the reference and every compared set.
CHUNK = 500  # Images generated or classified per compiled call.
_SALTS = {"validation": 0x51, "test": 0x52, "noise": 0x53}


def penultimate_features(apply_fn: Any, variables: Any, images: jax.Array) -> tuple[Any, Any]:
    """(features (N, D), logits) of a classifier: the input of the last dense layer it calls."""
    seen: list[jax.Array] = []

    def record(next_fun: Any, args: tuple, kwargs: dict, context: Any) -> Any:
        if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
            seen.append(args[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        logits = apply_fn(variables, images, train=False)
    if not seen:
        raise ValueError("the classifier calls no dense layer: no penultimate features")
    return seen[-1].reshape(images.shape[0], -1).astype(jnp.float32), logits


def _split_arrays(plan: Setup, split: str, limit: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, labels or None) of the first `limit` examples of a split, preprocessed."""
    source = plan.dataset.splits[split]
    examples = [plan.dataset.preprocess(source[i]) for i in range(min(len(source), limit))]
    images = np.stack([np.asarray(e["input"], np.float32) for e in examples])
    labels = np.stack([e["label"] for e in examples]) if "label" in examples[0] else None
    return images, labels


class SampleQuality:
    """Measures a generative run's samples against a feature classifier's reference."""

    def __init__(self, plan: Setup, classifier_dir: Path):
        where = f"sample_quality.classifier_workdir={str(classifier_dir)!r}"
        if not (classifier_dir / "config.json").is_file():
            raise UserInputError(f"{where}: no run there (no config.json); name a finished run.")
        classifier, _, self.classifier_state = evaluation.restore_checkpoint(classifier_dir, "best")
        if classifier.config.task.name != "classification":
            raise UserInputError(
                f"{where} is a {classifier.config.task.name!r} run; name a classification run."
            )
        if (classifier.dataset.name, classifier.dataset.input_shape) != (
            plan.dataset.name,
            plan.dataset.input_shape,
        ):
            raise UserInputError(
                f"{where} was trained on {classifier.dataset.name} "
                f"{classifier.dataset.input_shape}, this run on {plan.dataset.name} "
                f"{plan.dataset.input_shape}; name a classifier of the same data."
            )
        self.plan, self.classifier_dir = plan, classifier_dir
        self.task = plan.task
        self._features = jax.jit(
            lambda state, images: penultimate_features(
                state.apply_fn, {"params": state.params, **state.model_state}, images
            )
        )
        self._generate = jax.jit(
            plan.task.generate_images,
            static_argnums=(2, 4),
            out_shardings=sharding.replicated(plan.mesh),
        )
        train_images, _ = _split_arrays(plan, "train", MAX_IMAGES)
        test_images, test_labels = _split_arrays(plan, "test", MAX_IMAGES)
        section = plan.config.sample_quality
        self.num = section.get("num_samples", 0) or len(test_images)
        self.reference = gaussian_statistics(self.features(train_images)[0])
        real_features, real_logits = self.features(test_images[: self.num])
        self.fd_floor = frechet_distance(self.reference, gaussian_statistics(real_features))
        self.classifier_accuracy = (
            None
            if test_labels is None
            else float(np.mean(real_logits.argmax(-1) == test_labels[: self.num]))
        )
        noise_rng = np.random.default_rng(_SALTS["noise"] + plan.config.seed)
        mean, std = train_images.mean(axis=0), train_images.std(axis=0)
        noise = np.clip(mean + std * noise_rng.standard_normal((self.num, *mean.shape)), 0, 1)
        self.fd_noise = frechet_distance(
            self.reference, gaussian_statistics(self.features(noise.astype(np.float32))[0])
        )

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(penultimate features, logits) of (N, H, W, C) images, in chunks."""
        parts = [
            jax.device_get(self._features(self.classifier_state, images[i : i + CHUNK]))
            for i in range(0, len(images), CHUNK)
        ]
        return tuple(np.concatenate([np.asarray(p[k]) for p in parts]) for k in (0, 1))

    def samples(self, state: Any, split: str) -> tuple[np.ndarray, np.ndarray | None]:
        """`num` samples with the fixed key of `split`, and the labels they were asked for."""
        key = jax.random.fold_in(jax.random.PRNGKey(self.plan.config.seed), _SALTS[split])
        labels = np.arange(self.num) % self.plan.dataset.num_classes
        images = []
        for start in range(0, self.num, CHUNK):
            chunk = labels[start : start + CHUNK]
            asked = jnp.asarray(chunk, jnp.int32) if self.task.conditional else None
            out = self._generate(state, jax.random.fold_in(key, start), len(chunk), asked, 0)
            images.append(np.asarray(out.addressable_data(0), np.float32))
        return np.concatenate(images), labels if self.task.conditional else None

    def measure(self, state: Any, split: str) -> dict[str, float]:
        """`fd` (and `class_accuracy` when conditional) of the samples drawn for `split`."""
        images, labels = self.samples(state, split)
        features, logits = self.features(images)
        metrics = {FD_METRIC: frechet_distance(self.reference, gaussian_statistics(features))}
        if labels is not None:
            metrics[ACCURACY_METRIC] = float(np.mean(logits.argmax(-1) == labels))
        return metrics

    def report(self, test: dict[str, float]) -> dict[str, Any]:
        """summary.json's `sample_quality` entry from the test measurement."""
        fd = test[FD_METRIC]
        span = self.fd_noise - self.fd_floor
        return {
            "fd": fd,
            "fd_floor": self.fd_floor,
            "fd_noise": self.fd_noise,
            # The bar: at most 0.25 (a quarter of the way from the floor to noise).
            "fd_fraction_of_noise_gap": (fd - self.fd_floor) / span if span > 0 else None,
            **({ACCURACY_METRIC: test[ACCURACY_METRIC]} if ACCURACY_METRIC in test else {}),
            "num_images": self.num,
            "classifier_workdir": str(self.classifier_dir),
            "classifier_test_accuracy": self.classifier_accuracy,
        }


def open_for(plan: Setup, classifier_dir: Path | None = None) -> SampleQuality | None:
    """The run's SampleQuality, or None when its config does not ask for one. Without
    `classifier_dir` (the CLI passes the one it trained or found cached), the config must name
    `sample_quality.classifier_workdir`."""
    if not sample_quality.enabled(plan.config, plan.task.generates_images):
        return None
    if classifier_dir is None:
        named = plan.config.sample_quality.get("classifier_workdir", "")
        if not named:
            raise UserInputError(
                "sample_quality.classifier_workdir is '': name a finished classification run on "
                "the same data (`jaxdl train` trains sample_quality.classifier_config and caches "
                "it when this is '')."
            )
        classifier_dir = Path(named)
    return SampleQuality(plan, classifier_dir)

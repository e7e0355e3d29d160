"""What the engine needs from a kind of problem.

A task owns its state layout and its step logic; the engine owns everything around them (devices,
data order, checkpoints, logging). A GAN task keeps two networks and two optimizer states in its
own state pytree; a diffusion task keeps EMA params there. The engine never looks inside.
"""

import abc
from collections.abc import Iterable
from typing import Any

import jax
import ml_collections

from jaxdl.errors import UserInputError

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class Task(abc.ABC):
    """Builds the train state and defines one train step and one eval step, all pure functions."""

    @classmethod
    @abc.abstractmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
    ) -> "Task":
        """Builds the task's model(s) and optimizer(s) from the whole config and the dataset spec.

        `batch_axis_name` goes to models with batch norm or dropout (see models.build_model).
        """

    @abc.abstractmethod
    def init_state(self, rng: jax.Array, batch: Batch) -> Any:
        """A fresh state pytree with a scalar `step` field; `batch` gives the input shapes only."""

    def train_step(self, state: Any, batch: Batch) -> tuple[Any, Metrics]:
        """One update. Metrics are scalars averaged over the batch.

        A task with one gradient per step implements `compute_grads` and `apply_grads` and
        inherits this; the engine then also accumulates gradients over micro-batches and runs
        the step per device (shard_map). A task with another kind of step (e.g. a GAN's two
        alternating updates) overrides this method instead and gets neither.
        """
        grads, metrics, state = self.compute_grads(state, batch)
        return self.apply_grads(state, grads, metrics)

    def compute_grads(
        self, state: Any, batch: Batch, micro_batch: jax.Array | None = None
    ) -> tuple[Any, Metrics, Any]:
        """(gradients, metrics, state) for one batch; the params are not updated yet.

        The returned state carries what the forward pass changes besides the parameters (e.g.
        batch-norm statistics). `micro_batch` (None, or the index within a step's micro-batches)
        separates the random draws of a step's micro-batches. The gradients and metrics are means
        over `batch`: in a per-device step, over this device's examples.
        """
        raise NotImplementedError(f"{type(self).__name__} overrides train_step as a whole.")

    def apply_grads(self, state: Any, grads: Any, metrics: Metrics) -> tuple[Any, Metrics]:
        """The update from gradients averaged over the whole batch; adds e.g. 'grad_norm'."""
        raise NotImplementedError(f"{type(self).__name__} overrides train_step as a whole.")

    @property
    def splits_gradient_step(self) -> bool:
        """Whether the engine may call compute_grads/apply_grads itself."""
        return type(self).compute_grads is not Task.compute_grads

    @abc.abstractmethod
    def eval_step(self, state: Any, batch: Batch) -> Metrics:
        """Scalar sums over the real examples of a padded batch (`batch['mask']`), with a 'count'."""

    def finalize_eval(self, sums: dict[str, float]) -> dict[str, float]:
        """Turns summed eval metrics into the reported ones; by default, means over 'count'."""
        count = max(sums["count"], 1.0)
        return {name: value / count for name, value in sums.items() if name != "count"}

    def eval_metric_names(self, sum_names: Iterable[str]) -> set[str]:
        """The names `finalize_eval` reports, from the names of `eval_step`'s sums (what
        `train.monitor` may name); by default the sums' names less 'count'."""
        return {name for name in sum_names if name != "count"}

    def summary_fields(self, test_metrics: dict[str, float]) -> dict[str, Any]:
        """Top-level entries of summary.json from the test metrics (e.g. an LM's bits_per_char)."""
        del test_metrics
        return {}

    def run_report(
        self, validation_sums: dict[str, Any], sums: dict[str, Any], split: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """An end-of-run report from the summed `eval_step` outputs (before `finalize_eval`) of
        the validation split and of `split` (the test split at the end of training): summary.json
        entries, and figures (matplotlib `Figure`s) by PNG file name, which the engine writes
        into the workdir (engine/run_report.py). By default none: ({}, {})."""
        del validation_sums, sums, split
        return {}, {}

    @property
    def makes_run_report(self) -> bool:
        return type(self).run_report is not Task.run_report

    def generate_images(
        self, state: Any, key: jax.Array, num: int, labels: jax.Array | None, steps: int
    ) -> jax.Array:
        """(num, H, W, C) images in [0, 1] from a generative task (`jaxdl sample`); `labels`
        (num,) for a conditional model, else None; `steps` for an iterative sampler (0: its
        default). Pure given `key`."""
        raise NotImplementedError(f"{type(self).__name__} does not generate images.")

    @property
    def generates_images(self) -> bool:
        return type(self).generate_images is not Task.generate_images

    @property
    def conditional(self) -> bool:
        """Whether `generate_images` takes labels."""
        return False

    @property
    def sampler_steps(self) -> bool:
        """Whether `generate_images` takes a number of sampling steps (e.g. diffusion)."""
        return False

    def evaluation_images(self, state: Any, key: jax.Array) -> dict[str, jax.Array]:
        """Named (N, H, W, C) image batches in [0, 1] (e.g. samples) that the engine writes as
        grids after each validation pass (engine/image_grid.py); {} writes nothing. Called
        jitted, with the same key at every evaluation of a run, so grids compare across steps."""
        del state, key
        return {}

    @property
    def makes_images(self) -> bool:
        return type(self).evaluation_images is not Task.evaluation_images

    def with_teacher(self, teacher: Any) -> "Task":
        """This task learning also from a frozen teacher (`config.distill.teacher`); a task
        that cannot says so."""
        raise UserInputError(
            f"config.distill.teacher: {type(self).__name__} does not learn from a teacher; "
            "distillation is for classifiers (task.name='classification')."
        )

    def params(self, state: Any) -> Any:
        """The parameters a run is judged by (summary fingerprint, exported weights)."""
        return state.params

"""What the engine needs from a kind of problem.

A task owns its state layout and its step logic; the engine owns everything around them (devices,
data order, checkpoints, logging). A GAN task keeps two networks and two optimizer states in its
own state pytree; a diffusion task keeps EMA params there. The engine never looks inside.
"""

import abc
from typing import Any

import jax
import ml_collections

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class Task(abc.ABC):
    """Builds the train state and defines one train step and one eval step, all pure functions."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: ml_collections.ConfigDict, dataset: Any) -> "Task":
        """Builds the task's model(s) and optimizer(s) from the whole config and the dataset spec."""

    @abc.abstractmethod
    def init_state(self, rng: jax.Array, batch: Batch) -> Any:
        """A fresh state pytree with a scalar `step` field; `batch` gives the input shapes only."""

    @abc.abstractmethod
    def train_step(self, state: Any, batch: Batch) -> tuple[Any, Metrics]:
        """One update. Metrics are scalars averaged over the batch."""

    @abc.abstractmethod
    def eval_step(self, state: Any, batch: Batch) -> Metrics:
        """Scalar sums over the real examples of a padded batch (`batch['mask']`), with a 'count'."""

    def finalize_eval(self, sums: dict[str, float]) -> dict[str, float]:
        """Turns summed eval metrics into the reported ones; by default, means over 'count'."""
        count = max(sums["count"], 1.0)
        return {name: value / count for name, value in sums.items() if name != "count"}

    def params(self, state: Any) -> Any:
        """The parameters a run is judged by (summary fingerprint, exported weights)."""
        return state.params

"""Variational autoencoders: trained on the negative ELBO, judged in nats per image.

Per image, with one reparameterised sample z ~ q(z | x) (Kingma and Welling 2014):
    loss = -log p(x | z) + beta * KL(q(z | x) || N(0, I)),
where the KL term is in closed form. `beta` = 1 is the ELBO; other values trade reconstruction
for a smoother latent space (Higgins et al. 2017). Evaluation always uses beta = 1 and reports,
in nats per image: `nelbo` (with its `reconstruction` and `kl` terms) and `iwae_nll`, the
importance-weighted bound of Burda et al. (2016) with k = `task.iwae_samples` samples,
-log (1/k) sum_k p(x, z_k) / q(z_k | x): still an upper bound on -log p(x), and a tighter one
than the ELBO's. Both use fixed noise, so the figures of one checkpoint never change.

Task fields (`config.task.*`, defaults in TASK_FIELDS): `beta`, `iwae_samples`. A conditional
model (`model.conditional`) reads `batch['label']`.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxdl import optim
from jaxdl.errors import UserInputError
from jaxdl.models import build_model
from jaxdl.tasks.base import Batch, Metrics, Task
from jaxdl.tasks.state import TrainState, apply_grads_with_metrics

TASK_FIELDS = {"beta": 1.0, "iwae_samples": 64}
SAMPLE_GRID = 64  # Images in the grid written at each evaluation.
INTERPOLATION_ROWS = 8  # And an 8 x 8 grid of interpolations.
_EVAL_SALT = 0x7AE  # Separates the evaluation's fixed noise from every training step's.
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _fields(task: ml_collections.ConfigDict) -> tuple[float, int]:
    beta = task.get("beta", TASK_FIELDS["beta"])
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not beta >= 0:
        raise UserInputError(f"task.beta={beta!r} must be a number >= 0 (1: the ELBO).")
    samples = task.get("iwae_samples", TASK_FIELDS["iwae_samples"])
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise UserInputError(f"task.iwae_samples={samples!r} must be an integer >= 1.")
    return float(beta), samples


def kl_to_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mean, exp(log_var)) || N(0, I)) per example, summed over the latent dims."""
    return 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)


def gaussian_log_density(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log N(x; mean, exp(log_std)^2) per example, summed over every non-batch axis."""
    terms = -_HALF_LOG_2PI - log_std - 0.5 * ((x - mean) * jnp.exp(-log_std)) ** 2
    return jnp.sum(terms.reshape(terms.shape[0], -1), axis=-1)


class VAETask(Task):
    def __init__(
        self,
        model: Any,
        tx: optax.GradientTransformation,
        learning_rate: optax.Schedule,
        *,
        beta: float = 1.0,
        iwae_samples: int = 64,
    ):
        self.model, self.tx, self.learning_rate = model, tx, learning_rate
        self.beta, self.iwae_samples = beta, iwae_samples

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
    ) -> "VAETask":
        del batch_axis_name  # No batch norm, no dropout.
        if config.model.get("name") != "vae":
            raise UserInputError(
                f"task 'vae' needs model.name='vae'; got {config.model.get('name')!r}."
            )
        beta, iwae_samples = _fields(config.task)
        tx, learning_rate = optim.make_optimizer(
            config.optimizer, config.schedule, config.train.num_steps
        )
        model = build_model(config.model, num_classes=dataset.num_classes)
        model = model.clone(image_shape=tuple(dataset.input_shape))
        return cls(model, tx, learning_rate, beta=beta, iwae_samples=iwae_samples)

    def _labels(self, batch: Batch) -> jax.Array | None:
        return batch["label"] if self.model.conditional else None

    def init_state(self, rng: jax.Array, batch: Batch) -> TrainState:
        init_rng, state_rng = jax.random.split(rng)
        x = batch["input"]
        noise = jnp.zeros((x.shape[0], self.model.latent_dim), jnp.float32)
        params = self.model.init(init_rng, x, noise, self._labels(batch))["params"]
        return TrainState.from_variables({"params": params}, state_rng, self.model.apply, self.tx)

    def log_likelihood(self, params: Any, x: jax.Array, output: jax.Array) -> jax.Array:
        """log p(x | z) per example from the decoder's output for z."""
        if self.model.decoder == "bernoulli":
            losses = optax.sigmoid_binary_cross_entropy(output, x)
            return -jnp.sum(losses.reshape(x.shape[0], -1), axis=-1)
        log_std = self.model.apply({"params": params}, method="log_scale")
        return gaussian_log_density(x, output, log_std)

    def _terms(self, params: Any, batch: Batch, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(-log p(x | z), KL) per example."""
        x = batch["input"]
        output, mean, log_var = self.model.apply({"params": params}, x, noise, self._labels(batch))
        return -self.log_likelihood(params, x, output), kl_to_standard_normal(mean, log_var)

    def compute_grads(
        self, state: TrainState, batch: Batch, micro_batch: jax.Array | None = None
    ) -> tuple[Any, Metrics, TrainState]:
        rng = state.step_rng()
        if micro_batch is not None:
            rng = jax.random.fold_in(rng, micro_batch)
        noise = jax.random.normal(rng, (batch["input"].shape[0], self.model.latent_dim))

        def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            reconstruction, kl = self._terms(params, batch, noise)
            return jnp.mean(reconstruction + self.beta * kl), (reconstruction, kl)

        (loss, (reconstruction, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        metrics = {
            "loss": loss,
            "nelbo": jnp.mean(reconstruction + kl),
            "reconstruction": jnp.mean(reconstruction),
            "kl": jnp.mean(kl),
        }
        return grads, metrics, state

    def apply_grads(
        self, state: TrainState, grads: Any, metrics: Metrics
    ) -> tuple[TrainState, Metrics]:
        return apply_grads_with_metrics(state, grads, metrics, self.learning_rate)

    def iwae_nll(self, params: Any, batch: Batch, noise: jax.Array) -> jax.Array:
        """The k-sample importance-weighted bound on -log p(x) per example; noise (k, B, latent)."""
        x, labels = batch["input"], self._labels(batch)
        mean, log_var = self.model.apply({"params": params}, x, labels, method="encode")
        log_std = 0.5 * log_var

        def log_weight(eps: jax.Array) -> jax.Array:
            z = mean + jnp.exp(log_std) * eps
            output = self.model.apply({"params": params}, z, labels, method="decode")
            prior = gaussian_log_density(z, jnp.zeros_like(z), jnp.zeros_like(z))
            posterior = gaussian_log_density(z, mean, log_std)
            return self.log_likelihood(params, x, output) + prior - posterior

        log_weights = jax.lax.map(log_weight, noise)  # (k, B): one decoder pass per sample.
        return math.log(noise.shape[0]) - jax.nn.logsumexp(log_weights, axis=0)

    def eval_step(self, state: TrainState, batch: Batch) -> Metrics:
        key = jax.random.fold_in(state.rng, _EVAL_SALT)
        size = (batch["input"].shape[0], self.model.latent_dim)
        one, many = jax.random.split(key)
        reconstruction, kl = self._terms(state.params, batch, jax.random.normal(one, size))
        noise = jax.random.normal(many, (self.iwae_samples, *size))
        iwae = self.iwae_nll(state.params, batch, noise)
        mask = batch["mask"]
        return {
            "nelbo": jnp.sum((reconstruction + kl) * mask),
            "reconstruction": jnp.sum(reconstruction * mask),
            "kl": jnp.sum(kl * mask),
            "iwae_nll": jnp.sum(iwae * mask),
            "count": jnp.sum(mask),
        }

    @property
    def conditional(self) -> bool:
        return bool(self.model.conditional)

    def generate_images(
        self, state: TrainState, key: jax.Array, num: int, labels: jax.Array | None, steps: int
    ) -> jax.Array:
        """Decoded prior samples: the Bernoulli means, or the Gaussian means clipped to [0, 1]."""
        del steps  # One decoder pass.
        z = jax.random.normal(key, (num, self.model.latent_dim))
        return self._decode_means(state.params, z, labels)

    def _decode_means(self, params: Any, z: jax.Array, labels: jax.Array | None) -> jax.Array:
        output = self.model.apply({"params": params}, z, labels, method="decode")
        if self.model.decoder == "bernoulli":
            return jax.nn.sigmoid(output)
        return jnp.clip(output, 0.0, 1.0)

    def evaluation_images(self, state: TrainState, key: jax.Array) -> dict[str, jax.Array]:
        """'samples': 64 draws from the prior (a conditional model: classes 0, 1, ... in turn);
        'interpolation': 8 rows, each decoding 8 evenly spaced points on the line between two
        prior draws (a conditional model: row r keeps class r), to show the latent space is
        smooth."""
        sample_key, end_key = jax.random.split(key)
        labels = jnp.arange(SAMPLE_GRID) % self.model.num_classes if self.conditional else None
        ends = jax.random.normal(end_key, (2, INTERPOLATION_ROWS, 1, self.model.latent_dim))
        weights = jnp.linspace(0.0, 1.0, INTERPOLATION_ROWS)[None, :, None]
        z = ((1 - weights) * ends[0] + weights * ends[1]).reshape(-1, self.model.latent_dim)
        row_labels = jnp.repeat(jnp.arange(INTERPOLATION_ROWS), INTERPOLATION_ROWS)
        row_labels = row_labels % self.model.num_classes if self.conditional else None
        return {
            "samples": self.generate_images(state, sample_key, SAMPLE_GRID, labels, 0),
            "interpolation": self._decode_means(state.params, z, row_labels),
        }

    def summary_fields(self, test_metrics: dict[str, float]) -> dict[str, Any]:
        return {
            "nelbo_nats_per_image": test_metrics.get("nelbo"),
            "iwae_nll_nats_per_image": test_metrics.get("iwae_nll"),
            "iwae_samples": self.iwae_samples,
        }

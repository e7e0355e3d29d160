"""Generative adversarial networks: two networks, two optimizers, one compiled step.

Each train step is one discriminator update, then one generator update against the updated
discriminator, both inside the one function the engine compiles. With D the discriminator's
logit, x real images and G(z) fakes (Goodfellow et al. 2014; Lim and Ye 2017):
    non_saturating: L_D = softplus(-D(x)) + softplus(D(G(z))),  L_G = softplus(-D(G(z)))
    hinge:          L_D = relu(1 - D(x)) + relu(1 + D(G(z))),   L_G = -D(G(z))
The regularizer keeps the discriminator smooth: 'spectral_norm' (Miyato et al. 2018, in the
model: models/gan.py), 'r1' (Mescheder et al. 2018: + r1_weight / 2 * E ||grad_x D(x)||^2 on
real images) or 'none'. A conditional model (`model.conditional`) reads `batch['label']`; its
fakes take the labels of the real batch, i.e. classes in the data's proportions.

Evaluation draws fakes from fixed noise (the state's key with a constant salt), so the figures of
one checkpoint never change. Besides both losses and the discriminator's accuracy on real and
fake images (the sign of its logit) it reports `nearest_fake_mse`: for each held-out real image,
the mean squared pixel difference to the nearest of EVAL_FAKES fakes. The adversarial losses
only compare the two networks with each other; this compares checkpoints: it falls as the fakes
come closer to real images and cover more of them (after a collapse most reals are far from
any fake), so it picks the best checkpoint until a sample-quality metric (a Fréchet distance)
can. It rewards coverage more than realism: look at the sample grids too.

Task fields (`config.task.*`, defaults in TASK_FIELDS): `loss`, `regularizer`, `r1_weight`, and
`discriminator_lr_factor`: the discriminator's learning rate is the generator's
(`optimizer.learning_rate`, with the same schedule and optimizer) times this factor, so a
rollback that scales `optimizer.learning_rate` slows both (Heusel et al. 2017 use factors > 1).
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from jaxdl import optim
from jaxdl.errors import UserInputError
from jaxdl.models import build_model
from jaxdl.tasks.base import Batch, Metrics, Task

LOSSES = ("non_saturating", "hinge")
REGULARIZERS = ("spectral_norm", "r1", "none")
TASK_FIELDS = {
    "loss": "non_saturating",
    "regularizer": "spectral_norm",
    "r1_weight": 1.0,
    "discriminator_lr_factor": 1.0,
}
SAMPLE_GRID = 64  # Images in the grid written at each evaluation.
EVAL_FAKES = 256  # Fakes each held-out image is compared with (nearest_fake_mse).
_EVAL_SALT = 0x6A7  # Separates the evaluation's fixed noise from every training step's.


def _choice(task: ml_collections.ConfigDict, field: str, choices: tuple[str, ...]) -> str:
    value = task.get(field, TASK_FIELDS[field])
    if value not in choices:
        raise UserInputError(f"task.{field}={value!r} must be one of: {', '.join(choices)}.")
    return value


def _number(task: ml_collections.ConfigDict, field: str, *, positive: bool) -> float:
    value = task.get(field, TASK_FIELDS[field])
    bad = isinstance(value, bool) or not isinstance(value, int | float)
    if bad or not (value > 0 if positive else value >= 0):
        raise UserInputError(
            f"task.{field}={value!r} must be a number {'> 0' if positive else '>= 0'}."
        )
    return float(value)


def _fields(task: ml_collections.ConfigDict) -> dict[str, Any]:
    return {
        "loss": _choice(task, "loss", LOSSES),
        "regularizer": _choice(task, "regularizer", REGULARIZERS),
        "r1_weight": _number(task, "r1_weight", positive=False),
        "discriminator_lr_factor": _number(task, "discriminator_lr_factor", positive=True),
    }


def discriminator_losses(real_logits: jax.Array, fake_logits: jax.Array, kind: str) -> jax.Array:
    """The discriminator's loss per pair (real, fake), elementwise."""
    if kind == "hinge":
        return jax.nn.relu(1.0 - real_logits) + jax.nn.relu(1.0 + fake_logits)
    return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)


def generator_losses(fake_logits: jax.Array, kind: str) -> jax.Array:
    """The generator's loss per fake, elementwise."""
    if kind == "hinge":
        return -fake_logits
    return jax.nn.softplus(-fake_logits)


def gradient_penalty(logit_fn: Any, images: jax.Array) -> jax.Array:
    """||grad_x D(x)||^2 per image. Each logit depends on its own image only (no batch norm in
    the discriminator), so the gradient of their sum holds every image's own gradient."""
    grads = jax.grad(lambda x: jnp.sum(logit_fn(x)))(images)
    return jnp.sum(jnp.square(grads).reshape(images.shape[0], -1), axis=-1)


class GANState(struct.PyTreeNode):
    """Both networks' parameters ({'generator': ..., 'discriminator': ...}), each one's optimizer
    state, the spectral norm's vectors (`model_state`, {} without it), the step, and `rng`, the
    run's base key, which never changes: step k draws from fold_in(rng, k). Arrays only: the
    optimizers are the task's, so a task rebuilt with scaled learning rates (a rollback) steps
    the same state with its own."""

    step: jax.Array
    params: Any
    g_opt_state: Any
    d_opt_state: Any
    model_state: Any
    rng: jax.Array

    def step_rng(self) -> jax.Array:
        return jax.random.fold_in(self.rng, self.step)


class GANTask(Task):
    def __init__(
        self,
        model: Any,
        optimizers: tuple[optax.GradientTransformation, optax.GradientTransformation],
        learning_rates: tuple[optax.Schedule, optax.Schedule],
        *,
        loss: str = "non_saturating",
        r1_weight: float = 0.0,
    ):
        """`optimizers` and `learning_rates`: (generator's, discriminator's). `r1_weight` 0 turns
        R1 off; spectral normalisation is the model's `spectral_norm` field."""
        self.model, self.loss, self.r1_weight = model, loss, r1_weight
        self.g_tx, self.d_tx = optimizers
        self.g_lr, self.d_lr = learning_rates

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
    ) -> "GANTask":
        del batch_axis_name  # No batch norm, no dropout; the step always runs as one jit step.
        if config.model.get("name") != "gan":
            raise UserInputError(
                f"task 'gan' needs model.name='gan'; got {config.model.get('name')!r}."
            )
        if "spectral_norm" in config.model:
            raise UserInputError(
                "model.spectral_norm is set from task.regularizer; remove it and set "
                "task.regularizer='spectral_norm' (or 'r1', 'none')."
            )
        if optim.parse_groups(config.optimizer):
            raise UserInputError(
                "config.optimizer.frozen and optimizer.lr_multipliers are not supported by task "
                "'gan' (two networks, two optimizers); leave both empty."
            )
        fields = _fields(config.task)
        steps = config.train.num_steps
        g_opt = optim.make_optimizer(config.optimizer, config.schedule, steps)
        d_config = ml_collections.ConfigDict(config.optimizer.to_dict())
        d_config.learning_rate *= fields["discriminator_lr_factor"]
        d_opt = optim.make_optimizer(d_config, config.schedule, steps)
        model = build_model(config.model, num_classes=dataset.num_classes)
        model = model.clone(
            image_shape=tuple(dataset.input_shape),
            spectral_norm=fields["regularizer"] == "spectral_norm",
        )
        r1_weight = fields["r1_weight"] if fields["regularizer"] == "r1" else 0.0
        return cls(
            model,
            (g_opt[0], d_opt[0]),
            (g_opt[1], d_opt[1]),
            loss=fields["loss"],
            r1_weight=r1_weight,
        )

    def _labels(self, batch: Batch) -> jax.Array | None:
        return batch["label"] if self.model.conditional else None

    def _noise(self, key: jax.Array, num: int) -> jax.Array:
        return jax.random.normal(key, (num, self.model.latent_dim))

    def init_state(self, rng: jax.Array, batch: Batch) -> GANState:
        init_rng, state_rng = jax.random.split(rng)
        x = batch["input"]
        z = jnp.zeros((x.shape[0], self.model.latent_dim), jnp.float32)
        variables = self.model.init(init_rng, x, z, self._labels(batch))
        params = variables.pop("params")
        return GANState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            g_opt_state=self.g_tx.init(params["generator"]),
            d_opt_state=self.d_tx.init(params["discriminator"]),
            model_state=dict(variables),
            rng=state_rng,
        )

    def _generate(self, state: GANState, g_params: Any, z: jax.Array, labels: Any) -> jax.Array:
        params = {**state.params, "generator": g_params}
        return self.model.apply({"params": params}, z, labels, method="generate")

    def _discriminate(
        self, state: GANState, d_params: Any, images: jax.Array, labels: Any, update: bool
    ) -> tuple[jax.Array, Any]:
        """(logits, model state after the call)."""
        variables = {"params": {**state.params, "discriminator": d_params}, **state.model_state}
        if not (update and state.model_state):
            logits = self.model.apply(variables, images, labels, method="discriminate")
            return logits, state.model_state
        logits, updates = self.model.apply(
            variables, images, labels, True, method="discriminate", mutable=list(state.model_state)
        )
        return logits, {**state.model_state, **updates}

    # The two phases. Each changes its own network's parameters and optimizer state only (the
    # discriminator phase also advances the spectral norm's power iteration); neither advances
    # the step, which train_step does once for both.

    def discriminator_step(
        self, state: GANState, batch: Batch, key: jax.Array
    ) -> tuple[GANState, Metrics]:
        """One update of the discriminator on the batch's reals and fakes from noise `key`."""
        real, labels = batch["input"], self._labels(batch)
        fake = self._generate(state, state.params["generator"], self._noise(key, len(real)), labels)
        both_labels = None if labels is None else jnp.concatenate([labels, labels])

        def loss_fn(d_params: Any) -> tuple[jax.Array, tuple[Any, Metrics]]:
            # Reals and fakes in one pass: one power-iteration step per update, not two.
            logits, model_state = self._discriminate(
                state, d_params, jnp.concatenate([real, fake]), both_labels, update=True
            )
            real_logits, fake_logits = jnp.split(logits, 2)
            adversarial = jnp.mean(discriminator_losses(real_logits, fake_logits, self.loss))
            metrics = {
                "d_loss": adversarial,
                "d_real": jnp.mean(real_logits),
                "d_fake": jnp.mean(fake_logits),
            }
            if not self.r1_weight:
                return adversarial, (model_state, metrics)

            def real_logits_of(x: jax.Array) -> jax.Array:
                return self._discriminate(state, d_params, x, labels, update=False)[0]

            r1 = 0.5 * self.r1_weight * jnp.mean(gradient_penalty(real_logits_of, real))
            return adversarial + r1, (model_state, {**metrics, "r1": r1})

        grads, (model_state, metrics) = jax.grad(loss_fn, has_aux=True)(
            state.params["discriminator"]
        )
        updates, d_opt_state = self.d_tx.update(
            grads, state.d_opt_state, state.params["discriminator"]
        )
        params = {
            **state.params,
            "discriminator": optax.apply_updates(state.params["discriminator"], updates),
        }
        metrics["d_learning_rate"] = self.d_lr(state.step)
        metrics["d_grad_norm"] = optax.tree.norm(grads)
        state = state.replace(params=params, d_opt_state=d_opt_state, model_state=model_state)
        return state, metrics

    def generator_step(
        self, state: GANState, batch: Batch, key: jax.Array
    ) -> tuple[GANState, Metrics]:
        """One update of the generator against the current discriminator, noise from `key`."""
        labels = self._labels(batch)
        z = self._noise(key, batch["input"].shape[0])
        d_params = state.params["discriminator"]

        def loss_fn(g_params: Any) -> jax.Array:
            fake = self._generate(state, g_params, z, labels)
            logits, _ = self._discriminate(state, d_params, fake, labels, update=False)
            return jnp.mean(generator_losses(logits, self.loss))

        loss, grads = jax.value_and_grad(loss_fn)(state.params["generator"])
        updates, g_opt_state = self.g_tx.update(grads, state.g_opt_state, state.params["generator"])
        params = {
            **state.params,
            "generator": optax.apply_updates(state.params["generator"], updates),
        }
        metrics = {
            "g_loss": loss,
            "g_learning_rate": self.g_lr(state.step),
            "g_grad_norm": optax.tree.norm(grads),
        }
        return state.replace(params=params, g_opt_state=g_opt_state), metrics

    def train_step(self, state: GANState, batch: Batch) -> tuple[GANState, Metrics]:
        d_key, g_key = jax.random.split(state.step_rng())
        state, d_metrics = self.discriminator_step(state, batch, d_key)
        state, g_metrics = self.generator_step(state, batch, g_key)
        return state.replace(step=state.step + 1), {**d_metrics, **g_metrics}

    def eval_step(self, state: GANState, batch: Batch) -> Metrics:
        real, labels, mask = batch["input"], self._labels(batch), batch["mask"]
        size = len(real)
        # One pool of fixed fakes (a conditional model: classes 0, 1, ... in turn): the first
        # `size` face the discriminator beside the reals, all of them are searched for the
        # nearest fake. One generator and one discriminator pass keep the program small.
        num = max(size, EVAL_FAKES)
        fakes = self.generate_images(state, jax.random.fold_in(state.rng, _EVAL_SALT), num, None)
        both_labels = None
        if labels is not None:
            both_labels = jnp.concatenate([labels, jnp.arange(size) % self.model.num_classes])
        images = jnp.concatenate([real, fakes[:size]])
        logits, _ = self._discriminate(
            state, state.params["discriminator"], images, both_labels, update=False
        )
        real_logits, fake_logits = jnp.split(logits, 2)
        return {
            "d_loss": jnp.sum(discriminator_losses(real_logits, fake_logits, self.loss) * mask),
            "g_loss": jnp.sum(generator_losses(fake_logits, self.loss) * mask),
            "d_real_accuracy": jnp.sum((real_logits > 0) * mask),
            "d_fake_accuracy": jnp.sum((fake_logits < 0) * mask),
            "nearest_fake_mse": jnp.sum(nearest_squared_distance(real, fakes) * mask),
            "count": jnp.sum(mask),
        }

    @property
    def conditional(self) -> bool:
        return bool(self.model.conditional)

    def generate_images(
        self,
        state: GANState,
        key: jax.Array,
        num: int,
        labels: jax.Array | None,
        steps: int = 0,
    ) -> jax.Array:
        """`num` fakes from noise drawn with `key`. A conditional model given no labels (the
        evaluation's pool of fakes) takes classes 0, 1, ... in turn."""
        del steps  # One generator pass.
        if self.conditional and labels is None:
            labels = jnp.arange(num) % self.model.num_classes
        return self._generate(state, state.params["generator"], self._noise(key, num), labels)

    def evaluation_images(self, state: GANState, key: jax.Array) -> dict[str, jax.Array]:
        """'samples': 64 fakes (a conditional model: classes 0, 1, ... in turn)."""
        return {"samples": self.generate_images(state, key, SAMPLE_GRID, None)}

    def params(self, state: GANState) -> Any:
        """Both networks: the run's fingerprint covers the generator and the discriminator."""
        return state.params

    def summary_fields(self, test_metrics: dict[str, float]) -> dict[str, Any]:
        return {"nearest_fake_mse": test_metrics.get("nearest_fake_mse")}


def nearest_squared_distance(images: jax.Array, pool: jax.Array) -> jax.Array:
    """For each image, the mean squared pixel difference to its nearest image in `pool`."""
    x = images.reshape(images.shape[0], -1).astype(jnp.float32)
    y = pool.reshape(pool.shape[0], -1).astype(jnp.float32)
    # |x - y|^2 = |x|^2 + |y|^2 - 2 x.y: one matrix product instead of a (B, N, pixels) tensor.
    squared = jnp.sum(x**2, -1)[:, None] + jnp.sum(y**2, -1)[None, :] - 2.0 * x @ y.T
    return jnp.maximum(jnp.min(squared, axis=-1), 0.0) / x.shape[-1]

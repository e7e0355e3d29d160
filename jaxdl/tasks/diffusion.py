"""Denoising diffusion (DDPM, Ho et al. 2020): a U-Net learns to undo Gaussian noising.

Training: pixels in [0, 1] are mapped to [-1, 1]; a step t is drawn uniformly from the
schedule's T steps, the image is noised to x_t (tasks/diffusion_schedule.py), and the network
regresses the noise ('epsilon') or the velocity ('v', Salimans and Ho 2022) with a mean squared
error. An exponential moving average of the parameters (decay `ema_decay`, warmed up as
min(decay, (1 + step) / (10 + step))) is kept in the state; it samples, is evaluated and is the
run's fingerprint, because it gives visibly better samples than the raw parameters.

Sampling walks an evenly spaced subsequence of the T steps (any number, `steps`):
  - 'ddpm': ancestral sampling, x_{t-1} ~ q(x_{t-1} | x_t, x_0 = predicted x_0), with the
    posterior of the subsequence's own schedule (Nichol and Dhariwal 2021's respacing);
  - 'ddim': Song et al. (2021), x_{t-1} = sqrt(a') x_0 + sqrt(1 - a' - s^2) eps + s z, with
    s = eta * sqrt((1 - a') / (1 - a)) * sqrt(1 - a / a'); eta = 0 is deterministic given the
    starting noise, and eta = 1 is the same distribution as 'ddpm' (tests/test_diffusion.py).
The predicted x_0 is clipped to [-1, 1] at each step, and the noise recomputed from it.
Classifier-free guidance (Ho and Salimans 2022): a conditional model is trained with labels
dropped to "no class" with probability `label_dropout`, and samples with
out = out(no class) + guidance * (out(class) - out(no class)); guidance = 1 is plain
conditional sampling.

Task fields (`config.task.*`, defaults in TASK_FIELDS).
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxdl import optim
from jaxdl.errors import UserInputError
from jaxdl.models import build_model
from jaxdl.tasks import diffusion_schedule as schedules
from jaxdl.tasks.base import Batch, Metrics, Task
from jaxdl.tasks.state import TrainState, apply_grads_with_metrics

TASK_FIELDS = {
    "noise_schedule": "cosine",  # 'linear' or 'cosine'.
    "timesteps": 1000,  # T, the training schedule's length.
    "target": "epsilon",  # What the network predicts: 'epsilon' or 'v'.
    "ema_decay": 0.999,
    "sampler": "ddim",  # 'ddim' or 'ddpm'.
    "sample_steps": 50,  # Default number of sampling steps (`jaxdl sample --steps` overrides).
    "ddim_eta": 0.0,
    "label_dropout": 0.1,  # Conditional models: classifier-free guidance's "no class" share.
    "guidance": 2.0,  # Conditional sampling's guidance scale (1: none).
}
SAMPLERS = ("ddim", "ddpm")
TARGETS = ("epsilon", "v")
SAMPLE_GRID = 64
_EVAL_SALT = 0xD1F


def _fields(task: ml_collections.ConfigDict) -> dict[str, Any]:
    values = {name: task.get(name, default) for name, default in TASK_FIELDS.items()}
    choices = {"noise_schedule": schedules.SCHEDULES, "target": TARGETS, "sampler": SAMPLERS}
    for name, allowed in choices.items():
        if values[name] not in allowed:
            raise UserInputError(
                f"task.{name}={values[name]!r}: choose one of {', '.join(allowed)}."
            )
    for name in ("timesteps", "sample_steps"):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"task.{name}={value!r} must be an integer >= 1.")
    if values["sample_steps"] > values["timesteps"]:
        raise UserInputError(
            f"task.sample_steps={values['sample_steps']} exceeds task.timesteps="
            f"{values['timesteps']}: a sampler walks a subsequence of the training steps."
        )
    for name, low, high in (("ema_decay", 0, 1), ("ddim_eta", 0, 1), ("label_dropout", 0, 1)):
        value = values[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise UserInputError(f"task.{name}={value!r} must be a number in [{low}, {high}].")
    guidance = values["guidance"]
    if isinstance(guidance, bool) or not isinstance(guidance, int | float) or guidance < 0:
        raise UserInputError(f"task.guidance={guidance!r} must be a number >= 0 (1: no guidance).")
    try:
        schedules.make_schedule(values["noise_schedule"], values["timesteps"])
    except ValueError as error:
        raise UserInputError(f"task.timesteps / task.noise_schedule: {error}.") from None
    return values


class DiffusionState(TrainState):
    ema_params: Any


def ema_update(ema: Any, params: Any, step: jax.Array, decay: float) -> Any:
    """The EMA after the update that made `step` (>= 1): decay warmed up from 0.1 at step 1."""
    rate = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: rate * e + (1.0 - rate) * p, ema, params)


def sampling_steps(timesteps: int, steps: int) -> jax.Array:
    """`steps` of the T training steps, evenly spaced from 0 to T - 1, increasing (the sampler
    walks them backwards); all T when `steps` = T."""
    return jnp.asarray(
        [round(i * (timesteps - 1) / max(steps - 1, 1)) for i in range(steps)], jnp.int32
    )


def ancestral_step(
    x: jax.Array, x0: jax.Array, a: jax.Array, a_prev: jax.Array, z: jax.Array
) -> jax.Array:
    """A draw of q(x_prev | x_t = x, x_0 = x0) for the step from alpha-bar `a` back to
    `a_prev` (1 at the last step, which then returns x0): the DDPM posterior of a schedule whose
    beta for this step is 1 - a / a_prev."""
    beta = 1.0 - a / a_prev
    mean = (beta * jnp.sqrt(a_prev) * x0 + (1.0 - a_prev) * jnp.sqrt(1.0 - beta) * x) / (1.0 - a)
    return mean + jnp.sqrt(beta * (1.0 - a_prev) / (1.0 - a)) * z


def ddim_step(
    x: jax.Array, x0: jax.Array, a: jax.Array, a_prev: jax.Array, z: jax.Array, eta: float
) -> jax.Array:
    """DDIM's update from x_t = x to x_prev, with the noise implied by x and x0."""
    eps = (x - jnp.sqrt(a) * x0) / jnp.sqrt(1.0 - a)
    sigma = eta * jnp.sqrt((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev))
    direction = jnp.sqrt(jnp.maximum(1.0 - a_prev - sigma**2, 0.0))
    return jnp.sqrt(a_prev) * x0 + direction * eps + sigma * z


class DiffusionTask(Task):
    def __init__(
        self,
        model: Any,
        tx: optax.GradientTransformation,
        learning_rate: optax.Schedule,
        fields: dict[str, Any],
    ):
        self.model, self.tx, self.learning_rate = model, tx, learning_rate
        self.fields = fields
        self.schedule = schedules.make_schedule(fields["noise_schedule"], fields["timesteps"])

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, dataset: Any, batch_axis_name: Any = None
    ) -> "DiffusionTask":
        if config.model.get("name") != "unet":
            raise UserInputError(
                f"task 'diffusion' needs model.name='unet'; got {config.model.get('name')!r}."
            )
        fields = _fields(config.task)
        tx, learning_rate = optim.make_optimizer(
            config.optimizer, config.schedule, config.train.num_steps
        )
        model = build_model(
            config.model, num_classes=dataset.num_classes, batch_axis_name=batch_axis_name
        )
        try:
            model = model.clone(image_shape=tuple(dataset.input_shape))
        except ValueError as error:
            raise UserInputError(f"model.channel_mults: {error}") from None
        return cls(model, tx, learning_rate, fields)

    def init_state(self, rng: jax.Array, batch: Batch) -> DiffusionState:
        init_rng, state_rng = jax.random.split(rng)
        x = batch["input"]
        t = jnp.zeros(x.shape[:1], jnp.int32)
        labels = batch["label"] if self.model.conditional else None
        params = self.model.init(init_rng, x, t, labels, train=False)["params"]
        return DiffusionState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            ema_params=params,
            opt_state=self.tx.init(params),
            model_state={},
            rng=state_rng,
            apply_fn=self.model.apply,
            tx=self.tx,
        )

    def _loss(self, params: Any, batch: Batch, key: jax.Array, *, train: bool) -> jax.Array:
        """Per-example mean squared error of the prediction target, with draws from `key`."""
        x0 = 2.0 * batch["input"] - 1.0
        t_key, noise_key, label_key, dropout_key = jax.random.split(key, 4)
        t = jax.random.randint(t_key, x0.shape[:1], 0, self.schedule.num_steps)
        noise = jax.random.normal(noise_key, x0.shape)
        xt = schedules.add_noise(self.schedule, x0, t, noise)
        labels = batch["label"] if self.model.conditional else None
        if labels is not None and train:
            dropped = jax.random.bernoulli(label_key, self.fields["label_dropout"], t.shape)
            labels = jnp.where(dropped, self.model.num_classes, labels)
        out = self.model.apply(
            {"params": params}, xt, t, labels, train=train, rngs={"dropout": dropout_key}
        )
        if self.fields["target"] == "epsilon":
            target = noise
        else:
            target = schedules.velocity(self.schedule, x0, t, noise)
        return jnp.mean((out - target).reshape(x0.shape[0], -1) ** 2, axis=-1)

    def compute_grads(
        self, state: DiffusionState, batch: Batch, micro_batch: jax.Array | None = None
    ) -> tuple[Any, Metrics, DiffusionState]:
        key = state.step_rng()
        if micro_batch is not None:
            key = jax.random.fold_in(key, micro_batch)
        loss_fn = lambda p: jnp.mean(self._loss(p, batch, key, train=True))  # noqa: E731
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return grads, {"loss": loss}, state

    def apply_grads(
        self, state: DiffusionState, grads: Any, metrics: Metrics
    ) -> tuple[DiffusionState, Metrics]:
        state, metrics = apply_grads_with_metrics(state, grads, metrics, self.learning_rate)
        ema = ema_update(state.ema_params, state.params, state.step, self.fields["ema_decay"])
        return state.replace(ema_params=ema), metrics

    def eval_step(self, state: DiffusionState, batch: Batch) -> Metrics:
        """The EMA parameters' loss with fixed draws (the same at every evaluation)."""
        key = jax.random.fold_in(state.rng, _EVAL_SALT)
        loss = self._loss(state.ema_params, batch, key, train=False)
        return {"loss": jnp.sum(loss * batch["mask"]), "count": jnp.sum(batch["mask"])}

    def params(self, state: DiffusionState) -> Any:
        return state.ema_params

    @property
    def conditional(self) -> bool:
        return bool(self.model.conditional)

    @property
    def sampler_steps(self) -> bool:
        return True

    def predict(
        self, params: Any, x: jax.Array, t: jax.Array, labels: jax.Array | None
    ) -> jax.Array:
        """The network's output at x_t, guided when labels are given (see the module doc)."""
        t = jnp.broadcast_to(t, x.shape[:1])
        guidance = self.fields["guidance"]
        if labels is None or guidance == 1.0:
            return self.model.apply({"params": params}, x, t, labels, train=False)
        none = jnp.full_like(labels, self.model.num_classes)
        both = self.model.apply(
            {"params": params},
            jnp.concatenate([x, x]),
            jnp.concatenate([t, t]),
            jnp.concatenate([labels, none]),
            train=False,
        )
        with_class, without = jnp.split(both, 2)
        return without + guidance * (with_class - without)

    def sample(
        self,
        params: Any,
        start: jax.Array,
        step_key: jax.Array,
        labels: jax.Array | None,
        steps: int,
        sampler: str,
        eta: float,
    ) -> jax.Array:
        """Images in [-1, 1] from the starting noise `start` (x_T); step i draws its noise as
        normal(fold_in(step_key, i)), so samplers given one key share their draws (see the module
        doc for the two update rules)."""
        walk = sampling_steps(self.schedule.num_steps, steps)
        alphas = self.schedule.alphas_cumprod

        def update(i: jax.Array, x: jax.Array) -> jax.Array:
            index = steps - 1 - i  # Walk the subsequence backwards.
            t = walk[index]
            a = alphas[t]
            a_prev = jnp.where(index > 0, alphas[walk[jnp.maximum(index - 1, 0)]], 1.0)
            out = self.predict(params, x, t, labels)
            x0, _ = schedules.predicted_x0_and_noise(
                self.schedule, x, jnp.broadcast_to(t, x.shape[:1]), out, self.fields["target"]
            )
            x0 = jnp.clip(x0, -1.0, 1.0)
            z = jax.random.normal(jax.random.fold_in(step_key, i), x.shape)
            if sampler == "ddpm":
                return ancestral_step(x, x0, a, a_prev, z)
            return ddim_step(x, x0, a, a_prev, z, eta)

        return jax.lax.fori_loop(0, steps, update, start)

    def generate_images(
        self, state: DiffusionState, key: jax.Array, num: int, labels: jax.Array | None, steps: int
    ) -> jax.Array:
        steps = steps or self.fields["sample_steps"]
        steps = min(steps, self.schedule.num_steps)
        start_key, step_key = jax.random.split(key)
        x = self.sample(
            state.ema_params,
            jax.random.normal(start_key, (num, *self.model.image_shape)),
            step_key,
            labels,
            steps,
            self.fields["sampler"],
            self.fields["ddim_eta"],
        )
        return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)

    def evaluation_images(self, state: DiffusionState, key: jax.Array) -> dict[str, jax.Array]:
        """'samples': 64 with the default sampler (a conditional model: classes 0, 1, ...)."""
        labels = jnp.arange(SAMPLE_GRID) % self.model.num_classes if self.conditional else None
        return {"samples": self.generate_images(state, key, SAMPLE_GRID, labels, 0)}

    def summary_fields(self, test_metrics: dict[str, float]) -> dict[str, Any]:
        del test_metrics
        return {
            "sampler": self.fields["sampler"],
            "sample_steps": self.fields["sample_steps"],
            "target": self.fields["target"],
            "noise_schedule": self.fields["noise_schedule"],
        }

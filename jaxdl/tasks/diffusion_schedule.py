"""The noise schedule of a DDPM (Ho et al. 2020) and the conversions between what a denoiser
can predict: the noise (epsilon), the clean image (x0) or the velocity v (Salimans and Ho 2022).

Every table is computed once in float64 from the betas, then kept in float32, as the DDPM
reference does. Index t = 0 .. T-1 is the noising step; `alphas_cumprod[t]` is the fraction
of signal variance left after step t.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

SCHEDULES = ("linear", "cosine")
COSINE_OFFSET = 0.008  # s in Nichol and Dhariwal (2021): keeps the first betas from vanishing.
MAX_BETA = 0.999  # Their clip, so the last steps of the cosine schedule stay finite.


class NoiseSchedule(struct.PyTreeNode):
    betas: jax.Array
    alphas_cumprod: jax.Array
    alphas_cumprod_prev: jax.Array  # 1 before the first step.
    posterior_variance: jax.Array  # Variance of q(x_{t-1} | x_t, x_0).
    posterior_log_variance: jax.Array  # Clipped at t = 0, where the variance is 0.
    posterior_mean_x0: jax.Array  # Coefficients of the posterior mean on x_0 ...
    posterior_mean_xt: jax.Array  # ... and on x_t.

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])


def make_schedule(kind: str, num_steps: int) -> NoiseSchedule:
    """'linear': betas from 1e-4 to 0.02 over 1000 steps, stretched to `num_steps` (Nichol and
    Dhariwal's scaling, so alphas_cumprod ends near the same value); 'cosine': alpha-bar(t) =
    cos^2(pi/2 (t/T + s) / (1 + s)), betas clipped at 0.999."""
    if kind not in SCHEDULES:
        raise ValueError(f"noise schedule {kind!r}: choose one of {', '.join(SCHEDULES)}")
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps}: must be at least 1")
    if kind == "linear":
        scale = 1000 / num_steps
        if scale * 0.02 >= 1:
            raise ValueError(
                f"num_steps={num_steps}: the linear schedule needs more than 20 steps (its "
                "stretched betas reach 1); use more steps or the cosine schedule"
            )
        betas = np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)
    else:
        betas = np.clip(
            1
            - cosine_alpha_bar(np.arange(1, num_steps + 1), num_steps)
            / cosine_alpha_bar(np.arange(num_steps), num_steps),
            0.0,
            MAX_BETA,
        )
    return schedule_from_betas(betas)


def cosine_alpha_bar(t: np.ndarray, num_steps: int) -> np.ndarray:
    """alpha-bar at (fractional) step t of the cosine schedule, normalised to 1 at t = 0."""
    angle = lambda x: (x / num_steps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2  # noqa: E731
    return np.cos(angle(np.asarray(t, np.float64))) ** 2 / math.cos(angle(0.0)) ** 2


def schedule_from_betas(betas: np.ndarray) -> NoiseSchedule:
    betas = np.asarray(betas, np.float64)
    alphas = 1.0 - betas
    cumprod = np.cumprod(alphas)
    prev = np.concatenate([[1.0], cumprod[:-1]])
    variance = betas * (1.0 - prev) / (1.0 - cumprod)
    # At t = 0 the posterior is a point (variance 0); its log takes step 1's value instead.
    log_variance = np.log(
        np.concatenate([variance[1:2], variance[1:]])
        if len(betas) > 1
        else np.maximum(variance, 1e-20)
    )
    as32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return NoiseSchedule(
        betas=as32(betas),
        alphas_cumprod=as32(cumprod),
        alphas_cumprod_prev=as32(prev),
        posterior_variance=as32(variance),
        posterior_log_variance=as32(log_variance),
        posterior_mean_x0=as32(betas * np.sqrt(prev) / (1.0 - cumprod)),
        posterior_mean_xt=as32((1.0 - prev) * np.sqrt(alphas) / (1.0 - cumprod)),
    )


def _at(table: jax.Array, t: jax.Array, like: jax.Array) -> jax.Array:
    """table[t] for a batch of steps t, shaped to broadcast against images `like`."""
    return table[t].reshape(t.shape + (1,) * (like.ndim - t.ndim))


def add_noise(schedule: NoiseSchedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """A sample of q(x_t | x_0): sqrt(alpha-bar) x_0 + sqrt(1 - alpha-bar) noise."""
    signal = _at(schedule.alphas_cumprod, t, x0)
    return jnp.sqrt(signal) * x0 + jnp.sqrt(1.0 - signal) * noise


def velocity(schedule: NoiseSchedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """v = sqrt(alpha-bar) noise - sqrt(1 - alpha-bar) x_0, the v-prediction target."""
    signal = _at(schedule.alphas_cumprod, t, x0)
    return jnp.sqrt(signal) * noise - jnp.sqrt(1.0 - signal) * x0


def predicted_x0_and_noise(
    schedule: NoiseSchedule, xt: jax.Array, t: jax.Array, output: jax.Array, target: str
) -> tuple[jax.Array, jax.Array]:
    """(x_0, noise) implied by a denoiser's `output` at x_t, for target 'epsilon' or 'v'."""
    signal = _at(schedule.alphas_cumprod, t, xt)
    a, b = jnp.sqrt(signal), jnp.sqrt(1.0 - signal)
    if target == "epsilon":
        return (xt - b * output) / a, output
    if target == "v":
        return a * xt - b * output, b * xt + a * output
    raise ValueError(f"prediction target {target!r}: choose 'epsilon' or 'v'")


def posterior_mean(
    schedule: NoiseSchedule, x0: jax.Array, xt: jax.Array, t: jax.Array
) -> jax.Array:
    """Mean of q(x_{t-1} | x_t, x_0)."""
    return _at(schedule.posterior_mean_x0, t, xt) * x0 + _at(schedule.posterior_mean_xt, t, xt) * xt

"""The DDPM noise schedules and target conversions against their closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.tasks import diffusion_schedule as ds


def test_linear_schedule_closed_forms():
    schedule = ds.make_schedule("linear", 1000)
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(schedule.betas, betas, rtol=1e-6)
    np.testing.assert_allclose(schedule.alphas_cumprod, np.cumprod(1 - betas), rtol=1e-5)
    # Fewer steps stretch the betas so the end point stays close: about 4e-5 signal left.
    short = ds.make_schedule("linear", 250)
    assert float(short.alphas_cumprod[-1]) == pytest.approx(
        float(schedule.alphas_cumprod[-1]), rel=0.5
    )


def test_cosine_schedule_follows_its_alpha_bar():
    schedule = ds.make_schedule("cosine", 100)
    t = np.arange(1, 101)
    expected = (
        np.cos((t / 100 + 0.008) / 1.008 * np.pi / 2) ** 2 / np.cos(0.008 / 1.008 * np.pi / 2) ** 2
    )
    unclipped = np.asarray(schedule.betas) < ds.MAX_BETA
    np.testing.assert_allclose(
        schedule.alphas_cumprod[unclipped], expected[unclipped], rtol=1e-5, atol=1e-7
    )
    assert float(schedule.betas.max()) == pytest.approx(ds.MAX_BETA)  # The last steps are clipped.


def test_posterior_closed_forms():
    schedule = ds.make_schedule("linear", 50)
    beta, abar, prev = (
        np.asarray(x, np.float64)
        for x in (schedule.betas, schedule.alphas_cumprod, schedule.alphas_cumprod_prev)
    )
    t = 17
    assert prev[0] == 1.0 and prev[t] == pytest.approx(abar[t - 1], rel=1e-6)
    assert schedule.posterior_variance[t] == pytest.approx(
        beta[t] * (1 - abar[t - 1]) / (1 - abar[t]), rel=1e-5
    )
    assert float(schedule.posterior_variance[0]) == 0.0
    assert schedule.posterior_log_variance[0] == schedule.posterior_log_variance[1]
    # The posterior mean of the true x_0 and its noised x_t, by Bayes' rule for Gaussians.
    x0, noise = jnp.full((1, 2), 0.7), jnp.full((1, 2), -0.3)
    steps = jnp.array([t])
    xt = ds.add_noise(schedule, x0, steps, noise)
    mean = ds.posterior_mean(schedule, x0, xt, steps)
    alpha = 1 - beta[t]
    expected = (
        np.sqrt(prev[t]) * beta[t] * 0.7 + np.sqrt(alpha) * (1 - prev[t]) * float(xt[0, 0])
    ) / (1 - abar[t])
    assert float(mean[0, 0]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("target", ["epsilon", "v"])
def test_predictions_convert_back_to_x0_and_noise(target):
    schedule = ds.make_schedule("cosine", 20)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    x0, noise = (jax.random.normal(key, (4, 3, 3, 1)) for key in keys)
    t = jnp.array([0, 5, 12, 19])
    xt = ds.add_noise(schedule, x0, t, noise)
    output = noise if target == "epsilon" else ds.velocity(schedule, x0, t, noise)
    got_x0, got_noise = ds.predicted_x0_and_noise(schedule, xt, t, output, target)
    np.testing.assert_allclose(got_noise, noise, atol=1e-4)
    np.testing.assert_allclose(got_x0[1:], x0[1:], atol=1e-4)  # t = 0 divides by ~1: fine too.


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="noise schedule 'quadratic'"):
        ds.make_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="more than 20 steps"):
        ds.make_schedule("linear", 20)
    with pytest.raises(ValueError, match="prediction target"):
        ds.predicted_x0_and_noise(
            ds.make_schedule("linear", 50), jnp.zeros(1), jnp.zeros(1, int), jnp.zeros(1), "x"
        )

"""Diffusion: the sampler updates against the schedule's closed forms, DDIM and DDPM, EMA,
guidance, the loss, the U-Net, and a quick run through the CLI with its sample quality."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxdl.cli import main
from jaxdl.errors import UserInputError
from jaxdl.models.unet import UNet
from jaxdl.tasks import diffusion
from jaxdl.tasks import diffusion_schedule as ds
from tests.run_helpers import assert_killed_run_resumes_identically, summary

QUICK = "experiments/digits_diffusion.py:quick"


def _task(timesteps: int = 10, **fields) -> diffusion.DiffusionTask:
    model = UNet(
        num_classes=3,
        image_shape=(4, 4, 1),
        base_channels=4,
        channel_mults=(1,),
        attention_resolutions=(),
        num_heads=1,
        conditional=True,
    )
    values = {**diffusion.TASK_FIELDS, "timesteps": timesteps, "sample_steps": timesteps}
    return diffusion.DiffusionTask(
        model, optax.adam(1e-3), optax.constant_schedule(1e-3), {**values, **fields}
    )


def _fake_network(params, x, t, labels):
    """A stand-in denoiser (no compile of the U-Net): a fixed function of x and t."""
    del params, labels
    return 0.3 * x + 0.01 * t.astype(jnp.float32)


def test_ancestral_step_is_the_schedules_posterior():
    schedule = ds.make_schedule("linear", 50)
    x, x0, z = (jax.random.normal(jax.random.PRNGKey(i), (3, 4)) for i in range(3))
    for t in (1, 7, 49):
        a, a_prev = schedule.alphas_cumprod[t], schedule.alphas_cumprod_prev[t]
        expected = (
            ds.posterior_mean(schedule, x0, x, jnp.full(3, t))
            + jnp.sqrt(schedule.posterior_variance[t]) * z
        )
        np.testing.assert_allclose(
            diffusion.ancestral_step(x, x0, a, a_prev, z), expected, rtol=2e-4, atol=2e-5
        )
    # The last step returns the predicted clean image.
    np.testing.assert_allclose(
        diffusion.ancestral_step(x, x0, schedule.alphas_cumprod[0], 1.0, z), x0, atol=1e-5
    )


def test_ddim_with_eta_one_is_ddpm_and_eta_zero_ignores_the_noise():
    schedule = ds.make_schedule("cosine", 20)
    x, x0, z, other = (jax.random.normal(jax.random.PRNGKey(i), (5, 3)) for i in range(4))
    for t in range(1, 20):
        a, a_prev = schedule.alphas_cumprod[t], schedule.alphas_cumprod[t - 1]
        np.testing.assert_allclose(
            diffusion.ddim_step(x, x0, a, a_prev, z, 1.0),
            diffusion.ancestral_step(x, x0, a, a_prev, z),
            rtol=1e-4,
            atol=1e-5,
        )
        np.testing.assert_array_equal(
            diffusion.ddim_step(x, x0, a, a_prev, z, 0.0),
            diffusion.ddim_step(x, x0, a, a_prev, other, 0.0),
        )


def test_whole_samplers_agree_and_are_fixed_by_the_noise():
    steps = 4  # A subsequence of the 10 steps (all T steps: the per-step test above).
    task = _task()
    task.predict = _fake_network
    start = jax.random.normal(jax.random.PRNGKey(0), (6, 4, 4, 1))

    def sample(step_key, sampler, eta, begin=start):
        return task.sample(None, begin, step_key, None, steps, sampler, eta)

    key, other = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    # All T steps or a subsequence: DDIM with eta = 1 draws exactly what DDPM draws.
    np.testing.assert_allclose(sample(key, "ddim", 1.0), sample(key, "ddpm", 0.0), atol=1e-4)
    assert not np.allclose(sample(key, "ddpm", 0.0), sample(other, "ddpm", 0.0))
    # DDIM with eta = 0 is a function of the starting noise alone.
    np.testing.assert_array_equal(sample(key, "ddim", 0.0), sample(other, "ddim", 0.0))
    assert not np.allclose(sample(key, "ddim", 0.0), sample(key, "ddim", 0.0, -start))
    assert diffusion.sampling_steps(10, steps)[0] == 0
    assert diffusion.sampling_steps(10, steps)[-1] == 9


def test_ema_update_by_hand():
    ema, params = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, 6.0])}
    # Step 1: the warm-up rate min(0.999, 2 / 11).
    rate = 2 / 11
    np.testing.assert_allclose(
        diffusion.ema_update(ema, params, jnp.array(1), 0.999)["w"],
        rate * np.array([1.0, 2.0]) + (1 - rate) * np.array([3.0, 6.0]),
        rtol=1e-6,
    )
    # Late in training: the configured decay.
    np.testing.assert_allclose(
        diffusion.ema_update(ema, params, jnp.array(10**6), 0.9)["w"],
        0.9 * np.array([1.0, 2.0]) + 0.1 * np.array([3.0, 6.0]),
        rtol=1e-6,
    )


def test_guidance_mixes_with_and_without_the_class():
    task = _task(guidance=3.0)

    class Fake:
        num_classes = 3

        @staticmethod
        def apply(variables, x, t, labels, train):
            return jnp.broadcast_to((labels == 3).astype(jnp.float32)[:, None, None, None], x.shape)

    task.model = Fake()
    x = jnp.zeros((2, 4, 4, 1))
    out = task.predict(None, x, jnp.array(5), jnp.array([0, 1]))
    # without + 3 * (with - without) = 1 + 3 * (0 - 1)
    np.testing.assert_allclose(out, -2.0)


def test_loss_of_a_network_that_outputs_zero_is_the_targets_mean_square():
    for target in ("epsilon", "v"):
        task = _task(target=target)

        class Zero:
            conditional, num_classes = False, 3

            @staticmethod
            def apply(variables, xt, t, labels, train, rngs):
                return jnp.zeros_like(xt)

        task.model = Zero()
        batch = {"input": jax.random.uniform(jax.random.PRNGKey(1), (8, 4, 4, 1))}
        key = jax.random.PRNGKey(2)
        loss = task._loss(None, batch, key, train=True)
        t_key, noise_key, _, _ = jax.random.split(key, 4)
        t = jax.random.randint(t_key, (8,), 0, 10)
        noise = jax.random.normal(noise_key, (8, 4, 4, 1))
        x0 = 2 * batch["input"] - 1
        wanted = noise if target == "epsilon" else ds.velocity(task.schedule, x0, t, noise)
        np.testing.assert_allclose(loss, jnp.mean(wanted.reshape(8, -1) ** 2, -1), rtol=1e-5)


def test_unet_shapes_and_class_dependence():
    model = UNet(
        num_classes=3,
        image_shape=(8, 8, 1),
        base_channels=4,
        channel_mults=(1, 2),
        attention_resolutions=(4,),
        num_heads=1,
        conditional=True,
    )
    x = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(0), (1, 8, 8, 1)), (3, 8, 8, 1))
    t, labels = jnp.full(3, 7), jnp.array([0, 1, 3])  # 3: no class.
    # Random parameters made on the host (the zero-initialised output layer would hide
    # everything): only one copy of the network is compiled, which takes XLA seconds per block.
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, t, labels, train=False))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: 0.3 * rng.standard_normal(s.shape, np.float32), shapes)
    out = jax.jit(lambda p: model.apply(p, x, t, labels, train=False))(params)
    assert out.shape == x.shape
    assert not np.allclose(out[0], out[1]) and not np.allclose(out[0], out[2])
    with pytest.raises(ValueError, match="divisible"):
        UNet(num_classes=3, image_shape=(6, 6, 1), channel_mults=(1, 2, 2))


def test_bad_task_fields_name_the_field():
    for field, value in (
        ("target", "x0"),
        ("sample_steps", 0),
        ("ema_decay", 1.5),
        ("noise_schedule", "sigmoid"),
    ):
        with pytest.raises(UserInputError, match=rf"task\.{field}"):
            diffusion._fields(ml_collections.ConfigDict({field: value}))
    with pytest.raises(UserInputError, match=r"task\.sample_steps"):
        diffusion._fields(ml_collections.ConfigDict({"timesteps": 10, "sample_steps": 20}))


def test_generate_images_with_a_real_unet_is_fixed_by_the_key_and_follows_the_label():
    # v-prediction: a near-zero output keeps x0 inside [-1, 1] (epsilon would saturate it).
    task = _task(timesteps=20, sample_steps=3, guidance=2.0, target="v")
    shapes = jax.eval_shape(task.init_state, jax.random.PRNGKey(0), _image_batch(2))
    rng = np.random.default_rng(0)
    # Small random parameters: large ones saturate every pixel at 0 or 1, whatever the label.
    params = jax.tree.map(lambda s: 0.05 * rng.standard_normal(s.shape, np.float32), shapes.params)
    state = shapes.replace(ema_params=params)
    generate = jax.jit(task.generate_images, static_argnums=(2, 4))
    labels = jnp.array([0, 1, 0])
    first = generate(state, jax.random.PRNGKey(1), 3, labels, 0)
    assert first.shape == (3, 4, 4, 1) and 0.0 <= float(first.min()) <= float(first.max()) <= 1.0
    np.testing.assert_array_equal(first, generate(state, jax.random.PRNGKey(1), 3, labels, 0))
    assert not np.allclose(first, generate(state, jax.random.PRNGKey(2), 3, labels, 0))
    # Another label with the same key: other images (by little, with random parameters).
    assert not np.allclose(first, generate(state, jax.random.PRNGKey(1), 3, labels + 1, 0))


def _image_batch(count: int) -> dict:
    return {"input": jnp.zeros((count, 4, 4, 1)), "label": jnp.zeros(count, jnp.int32)}


# A quick run compiles the U-Net several times (init, step, evaluation, two samplers): about
# 90 s on 2 cores. The fast suite runs the other families through the CLI and this one's
# sampling above.
@pytest.mark.slow
def test_quick_run_reports_sample_quality_and_samples(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", QUICK, "--workdir", str(run)]) == 0
    facts = summary(run)
    quality = facts["sample_quality"]
    assert quality["fd_floor"] < quality["fd_noise"]
    assert quality["fd"] == facts["final_metrics"]["test/fd"]
    assert 0.0 <= quality["class_accuracy"] <= 1.0 and quality["num_images"] == 64
    assert facts["best_metrics"]["val/fd"] > 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "samples_000020.png",
        "samples_000040.png",
    ]
    # jaxdl sample: by class, with another number of steps; fixed by the seed.
    for name in ("a.npz", "b.npz"):
        args = ["--num", "4", "--class", "2", "--steps", "3", "--out", str(tmp_path / name)]
        assert main(["sample", "--workdir", str(run), *args]) == 0
    first, second = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert first["images"].shape == (4, 8, 8, 1) and list(first["labels"]) == [2] * 4
    np.testing.assert_array_equal(first["images"], second["images"])
    capsys.readouterr()
    assert (
        main(["sample", "--workdir", str(run), "--class", "10", "--out", str(tmp_path / "c.png")])
        == 2
    )
    assert "--class 10" in capsys.readouterr().err


# Three CLI runs (a few minutes); the engine's resume is covered for every task in the fast suite.
@pytest.mark.slow
def test_killed_diffusion_run_resumes_to_identical_parameters(tmp_path):
    assert_killed_run_resumes_identically(tmp_path, QUICK)

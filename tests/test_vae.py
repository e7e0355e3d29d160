"""The VAE family: its loss terms by hand, the importance-weighted bound, training, the CLI."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxdl.cli import main
from jaxdl.errors import UserInputError
from jaxdl.models.vae import VAE
from jaxdl.tasks import vae as vae_task
from tests.run_helpers import assert_killed_run_resumes_identically, run_train, summary


def _task(**fields) -> vae_task.VAETask:
    model = VAE(num_classes=10, image_shape=(8, 8, 1), latent_dim=4, hidden_sizes=(32,), **fields)
    return vae_task.VAETask(model, optax.adam(3e-3), optax.constant_schedule(3e-3))


def _batch(count: int = 32) -> dict:
    # Two fixed binary patterns, by label: something a tiny VAE can learn in a few steps.
    labels = np.arange(count) % 2
    patterns = np.stack([np.eye(8), np.fliplr(np.eye(8))])[..., None].astype(np.float32)
    return {
        "input": jnp.asarray(patterns[labels]),
        "label": jnp.asarray(labels, jnp.int32),
        "mask": jnp.ones(count),
    }


def test_loss_terms_by_hand():
    mean, log_var = jnp.array([[1.0, 2.0]]), jnp.array([[math.log(4.0), 0.0]])
    expected = 0.5 * ((4 + 1 - 1 - math.log(4)) + (1 + 4 - 1 - 0))
    assert float(vae_task.kl_to_standard_normal(mean, log_var)[0]) == pytest.approx(expected)
    assert float(vae_task.kl_to_standard_normal(jnp.zeros((1, 3)), jnp.zeros((1, 3)))[0]) == 0.0
    x = jnp.zeros((1, 2, 2))
    density = vae_task.gaussian_log_density(x, x, jnp.zeros_like(x))
    assert float(density[0]) == pytest.approx(-4 * 0.5 * math.log(2 * math.pi))
    # Bernoulli with logits 0: every pixel has probability 1/2 whatever its value.
    task = _task()
    params = jax.jit(task.init_state)(jax.random.PRNGKey(0), _batch()).params
    half = task.log_likelihood(params, jnp.full((1, 8, 8, 1), 0.3), jnp.zeros((1, 8, 8, 1)))
    assert float(half[0]) == pytest.approx(-64 * math.log(2), rel=1e-6)


def test_training_lowers_the_bound_and_iwae_is_below_the_elbo():
    # The Gaussian decoder here; the quick run below trains the Bernoulli one.
    task = _task(decoder="gaussian")
    batch = _batch()
    state = jax.jit(task.init_state)(jax.random.PRNGKey(1), batch)
    step = jax.jit(task.train_step)
    evaluate = jax.jit(task.eval_step)
    before = evaluate(state, batch)
    for _ in range(60):
        state, metrics = step(state, batch)
    after = evaluate(state, batch)
    assert float(after["nelbo"]) < float(before["nelbo"]) - 0.2 * abs(float(before["nelbo"]))
    # k = 64 importance samples bound -log p(x) more tightly than the ELBO, on average.
    assert float(after["iwae_nll"]) < float(after["nelbo"])
    assert set(metrics) >= {"loss", "nelbo", "reconstruction", "kl", "grad_norm"}


def test_conditional_decoder_reads_the_label():
    task = _task(conditional=True)
    state = jax.jit(task.init_state)(jax.random.PRNGKey(2), _batch())
    z = jax.random.normal(jax.random.PRNGKey(3), (2, 4))
    decode = lambda labels: task.model.apply(  # noqa: E731
        {"params": state.params}, z, jnp.asarray(labels), method="decode"
    )
    assert not np.allclose(decode([0, 0]), decode([1, 1]))
    with pytest.raises(ValueError, match="needs the labels"):
        task.model.apply({"params": state.params}, z, None, method="decode")


def test_bad_task_fields_name_the_field():
    with pytest.raises(UserInputError, match=r"task\.beta"):
        vae_task._fields(ml_collections.ConfigDict({"beta": -1.0}))
    with pytest.raises(UserInputError, match=r"task\.iwae_samples"):
        vae_task._fields(ml_collections.ConfigDict({"iwae_samples": 0}))


def test_quick_run_reports_nats_per_image_and_samples(tmp_path, capsys):
    result = run_train(tmp_path / "run", config="experiments/digits_vae.py:quick")
    assert result.returncode == 0, result.stderr[-2000:]
    facts = summary(tmp_path / "run")
    assert facts["iwae_samples"] == 4
    assert 0 < facts["iwae_nll_nats_per_image"] <= facts["nelbo_nats_per_image"]
    assert facts["final_metrics"]["test/nelbo"] == facts["nelbo_nats_per_image"]
    # Sample quality against the quick classifier (trained once per test session, cached).
    quality = facts["sample_quality"]
    assert 0.0 <= quality["fd_floor"] < quality["fd_noise"] and quality["num_images"] == 360
    assert quality["fd"] == facts["final_metrics"]["test/fd"] > 0.0
    assert "class_accuracy" not in quality  # Not a conditional model.
    # A grid of prior samples after each validation pass (the quick run evaluates twice).
    grids = sorted(path.name for path in (tmp_path / "run" / "samples").iterdir())
    assert grids == [
        f"{kind}_0000{step}.png" for kind in ("interpolation", "samples") for step in (20, 40)
    ]
    # jaxdl sample: the raw samples, fixed by the seed (a .png goes through the same grid code
    # as the evaluation grids above); bad requests exit 2 and write nothing.
    run = str(tmp_path / "run")
    for name in ("a.npz", "b.npz"):
        assert main(["sample", "--workdir", run, "--num", "5", "--out", str(tmp_path / name)]) == 0
    first, second = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert first["images"].shape == (5, 8, 8, 1) and "labels" not in first
    np.testing.assert_array_equal(first["images"], second["images"])
    capsys.readouterr()
    for extra in (
        ["--out", str(tmp_path / "a.npz")],
        ["--out", str(tmp_path / "c.png"), "--class", "1"],
    ):
        assert main(["sample", "--workdir", run, *extra]) == 2
        assert capsys.readouterr().err.startswith("jaxdl: error: ")
    assert not (tmp_path / "c.png").exists()


# Three CLI runs (about a minute); the engine's resume is covered for every task in the fast suite.
@pytest.mark.slow
def test_killed_vae_run_resumes_to_identical_parameters(tmp_path):
    assert_killed_run_resumes_identically(tmp_path, "experiments/digits_vae.py:quick")

"""The GAN family: both losses and R1 by hand, spectral norm, the two phases, sampling, the CLI."""

import math
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax.core import meta

from jaxdl.cli import main
from jaxdl.errors import UserInputError
from jaxdl.models import gan as gan_model
from jaxdl.models import layers
from jaxdl.models.gan import GAN
from jaxdl.tasks import gan as gan_task
from tests.run_helpers import assert_killed_run_resumes_identically, summary

QUICK = "experiments/digits_gan.py:quick"
# XLA's CPU optimisations double the compile time of these tiny programs and save nothing on
# running them once (the engine compiles its one-off init the same way).
_FAST_COMPILE = {"xla_backend_optimization_level": 0}
# The fast CLI run: one device, one checkpoint (at the end); the slow resume test below saves
# mid-run on a mesh of two devices (tests/run_helpers.py).
FAST_RUN = ("--config.train.checkpoint_every=40", "--config.mesh.num_devices=1")


def _compiled(fn, *args):
    """`fn` jitted and compiled for arguments shaped like `args`."""
    return jax.jit(fn).lower(*args).compile(compiler_options=_FAST_COMPILE)


def _task(*, r1_weight: float = 0.0, **fields) -> gan_task.GANTask:
    model = GAN(
        num_classes=10,
        image_shape=(8, 8, 1),
        latent_dim=4,
        generator_features=4,
        discriminator_features=4,
        **fields,
    )
    txs, schedules = (optax.adam(1e-2),) * 2, (optax.constant_schedule(1e-2),) * 2
    return gan_task.GANTask(model, txs, schedules, r1_weight=r1_weight)


def _batch(count: int = 16) -> dict:
    images = np.random.default_rng(0).uniform(size=(count, 8, 8, 1)).astype(np.float32)
    return {
        "input": jnp.asarray(images),
        "label": jnp.arange(count, dtype=jnp.int32) % 10,
        "mask": jnp.ones(count),
    }


def _init(task: gan_task.GANTask) -> gan_task.GANState:
    # The engine's form: the logical-axis boxes taken off.
    init = lambda rng, batch: meta.unbox(task.init_state(rng, batch))  # noqa: E731
    args = (jax.random.PRNGKey(0), _batch())
    return _compiled(init, *args)(*args)


@pytest.fixture(scope="module")
def conditional_run() -> tuple[gan_task.GANTask, gan_task.GANState]:
    """A conditional task with spectral norm and its fresh state, shared: each compile counts."""
    task = _task(conditional=True, spectral_norm=True)
    return task, _init(task)


@pytest.fixture(scope="module")
def sample_two(conditional_run):
    """`(state, key, labels) -> 2 images` of the conditional task, compiled once."""
    task, state = conditional_run
    sample = lambda state, key, labels: task.generate_images(state, key, 2, labels)  # noqa: E731
    return _compiled(sample, state, jax.random.PRNGKey(0), jnp.zeros(2, jnp.int32))


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_losses_by_hand():
    real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
    d = gan_task.discriminator_losses(real, fake, "non_saturating")
    expected = [_softplus(-2.0) + _softplus(0.5), _softplus(1.0) + _softplus(-3.0)]
    np.testing.assert_allclose(d, expected, rtol=1e-6)
    np.testing.assert_allclose(
        gan_task.generator_losses(fake, "non_saturating"), [_softplus(-0.5), _softplus(3.0)]
    )
    # Hinge: relu(1 - real) + relu(1 + fake); a confident, correct discriminator pays nothing.
    np.testing.assert_allclose(gan_task.discriminator_losses(real, fake, "hinge"), [1.5, 2.0])
    np.testing.assert_allclose(gan_task.generator_losses(fake, "hinge"), [-0.5, 3.0])
    # At logit 0 the discriminator is undecided: log 2 for each of real and fake.
    zero = jnp.zeros(1)
    assert float(gan_task.discriminator_losses(zero, zero, "non_saturating")[0]) == (
        pytest.approx(2 * math.log(2.0))
    )


def test_r1_penalty_of_a_linear_discriminator_is_the_weight_norm():
    # D(x) = <w, x> + b: grad_x D = w for every image, whatever the image.
    w = jnp.arange(1.0, 65.0).reshape(8, 8, 1) / 64
    logit_fn = lambda x: jnp.sum(x * w, axis=(1, 2, 3)) + 3.0  # noqa: E731
    penalty = gan_task.gradient_penalty(logit_fn, _batch(4)["input"])
    np.testing.assert_allclose(penalty, [float(jnp.sum(w**2))] * 4, rtol=1e-6)


def test_spectral_norm_brings_the_largest_singular_value_to_one():
    kernel = 5.0 * jax.random.normal(jax.random.PRNGKey(0), (6, 4))
    layer = gan_model.SpectralNorm(layers.dense(4, ("embed", "mlp"), dtype=jnp.float32))
    # Zero bias: the layer's output on the identity is its normalised kernel.
    eye, u = jnp.eye(6), jnp.full(4, 0.5)
    variables = {
        "params": {"layer": {"kernel": kernel, "bias": jnp.zeros(4)}},
        "batch_stats": {"u": u},
    }

    def power_step(variables: dict) -> tuple[jax.Array, dict]:
        out, updates = layer.apply(variables, eye, update_stats=True, mutable=["batch_stats"])
        return out, {**variables, **updates}

    power_step = _compiled(power_step, variables)
    for _ in range(20):
        normalized, variables = power_step(variables)
    assert np.linalg.svd(np.asarray(kernel), compute_uv=False)[0] > 5
    assert np.linalg.svd(np.asarray(normalized), compute_uv=False)[0] == pytest.approx(1, abs=1e-3)


def test_each_phase_changes_only_its_own_network(conditional_run):
    task, state = conditional_run
    batch = _batch()
    assert set(state.params) == {"generator", "discriminator"}
    assert state.model_state  # The spectral norm's vectors.
    d_key, g_key = jax.random.split(state.step_rng())
    after_d, d_metrics = _compiled(task.discriminator_step, state, batch, d_key)(
        state, batch, d_key
    )
    after_g, g_metrics = _compiled(task.generator_step, after_d, batch, g_key)(
        after_d, batch, g_key
    )

    def same(a, b) -> bool:
        return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))

    # The discriminator phase: its params, its optimizer state and the power iteration move.
    assert not same(after_d.params["discriminator"], state.params["discriminator"])
    assert not same(after_d.d_opt_state, state.d_opt_state)
    assert not same(after_d.model_state, state.model_state)
    assert same(after_d.params["generator"], state.params["generator"])
    assert same(after_d.g_opt_state, state.g_opt_state)
    # The generator phase: the generator's only.
    assert not same(after_g.params["generator"], after_d.params["generator"])
    assert not same(after_g.g_opt_state, after_d.g_opt_state)
    assert same(after_g.params["discriminator"], after_d.params["discriminator"])
    assert same(
        (after_g.d_opt_state, after_g.model_state), (after_d.d_opt_state, after_d.model_state)
    )
    assert int(after_g.step) == 0  # train_step advances the step, once for both phases.
    assert set(d_metrics) == {"d_loss", "d_real", "d_fake", "d_learning_rate", "d_grad_norm"}
    assert set(g_metrics) == {"g_loss", "g_learning_rate", "g_grad_norm"}


def test_r1_is_logged_and_adds_to_the_discriminator_loss(conditional_run):
    # The same parameters without spectral norm (which only adds the 'batch_stats' vectors).
    task = _task(conditional=True, r1_weight=10.0)
    state = conditional_run[1].replace(model_state={})
    args = (state, _batch(), jax.random.PRNGKey(3))
    _, metrics = _compiled(task.discriminator_step, *args)(*args)
    assert float(metrics["r1"]) > 0


def test_conditional_networks_read_the_label(conditional_run, sample_two):
    task, state = conditional_run
    variables = {"params": state.params, **state.model_state}
    discriminate = lambda x, labels: task.model.apply(  # noqa: E731
        variables, x, labels, method="discriminate"
    )
    images, zeros, ones = _batch(2)["input"], jnp.zeros(2, jnp.int32), jnp.ones(2, jnp.int32)
    discriminate = _compiled(discriminate, images, zeros)
    assert not np.allclose(discriminate(images, zeros), discriminate(images, ones))
    key = jax.random.PRNGKey(4)
    assert not np.allclose(sample_two(state, key, zeros), sample_two(state, key, ones))
    with pytest.raises(ValueError, match="needs the labels"):
        jax.eval_shape(lambda: task.model.apply(variables, jnp.zeros((2, 4)), method="generate"))


def test_sampling_is_fixed_by_the_key(conditional_run, sample_two):
    state, labels = conditional_run[1], jnp.array([3, 7])
    first = sample_two(state, jax.random.PRNGKey(5), labels)
    assert first.shape == (2, 8, 8, 1)
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    np.testing.assert_array_equal(first, sample_two(state, jax.random.PRNGKey(5), labels))
    assert not np.allclose(first, sample_two(state, jax.random.PRNGKey(6), labels))


@pytest.mark.parametrize(
    "shape, base, stages",
    [
        ((8, 8, 1), (4, 4), 1),
        ((28, 28, 1), (7, 7), 2),
        ((32, 32, 3), (4, 4), 3),
        ((5, 6, 1), (5, 6), 0),
    ],
)
def test_image_sizes(shape, base, stages):
    assert gan_model.stage_plan(shape) == (base, stages)
    model = GAN(
        num_classes=10,
        image_shape=shape,
        latent_dim=4,
        generator_features=2,
        discriminator_features=2,
        spectral_norm=True,
    )
    # Shapes only (no compilation): both networks fit the image size.
    images, z = jnp.zeros((3, *shape)), jnp.zeros((3, 4))
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), images, z)
    fakes, logits = jax.eval_shape(model.apply, variables, images, z)
    assert (fakes.shape, logits.shape) == ((3, *shape), (3,))


def test_bad_fields_name_the_field():
    for field, value in (
        ("loss", "wasserstein"),
        ("regularizer", "dropout"),
        ("r1_weight", -1.0),
        ("discriminator_lr_factor", 0),
    ):
        with pytest.raises(UserInputError, match=rf"task\.{field}"):
            gan_task._fields(ml_collections.ConfigDict({field: value}))
    config = ml_collections.ConfigDict(
        {"model": {"name": "gan", "spectral_norm": True}, "task": {}}
    )
    digits = types.SimpleNamespace(num_classes=10, input_shape=(8, 8, 1))
    with pytest.raises(UserInputError, match=r"model\.spectral_norm.*task\.regularizer"):
        gan_task.GANTask.from_config(config, digits)
    with pytest.raises(UserInputError, match=r"model\.generator_features"):
        GAN(num_classes=10, generator_features=0)


def test_quick_run_writes_samples_and_jaxdl_sample_works(tmp_path):
    # Conditional: the fast suite's one run that reports class_accuracy and monitors fd.
    run = str(tmp_path / "run")
    conditional = "--config.model.conditional=True"
    assert main(["train", "--config", QUICK, "--workdir", run, *FAST_RUN, conditional]) == 0
    facts = summary(tmp_path / "run")
    assert facts["final_metrics"]["test/nearest_fake_mse"] == facts["nearest_fake_mse"] > 0
    quality = facts["sample_quality"]
    assert quality["fd"] == facts["final_metrics"]["test/fd"] == facts["final_metrics"]["test/fd"]
    assert 0.0 <= quality["class_accuracy"] <= 1.0 and quality["num_images"] == 64
    assert facts["best_metrics"]["val/fd"] > 0
    assert {"test/d_loss", "test/g_loss", "test/d_real_accuracy"} <= set(facts["final_metrics"])
    grids = sorted(path.name for path in (tmp_path / "run" / "samples").iterdir())
    assert grids == ["samples_000020.png", "samples_000040.png"]
    # jaxdl sample reads the checkpoint (fixed by the key: test_sampling_is_fixed_by_the_key).
    out = tmp_path / "samples.npz"
    assert main(["sample", "--workdir", run, "--num", "5", "--seed", "1", "--out", str(out)]) == 0
    images, labels = np.load(out)["images"], np.load(out)["labels"]
    assert images.shape == (5, 8, 8, 1) and images.min() >= 0 and images.max() <= 1
    assert list(labels) == [0, 1, 2, 3, 4]
    assert not np.allclose(images[0], images[1])


# Three CLI runs; the engine's resume is covered for every task in the fast suite.
@pytest.mark.slow
def test_killed_gan_run_resumes_to_identical_parameters(tmp_path):
    # The fingerprint covers both networks (GANTask.params); the optimizer states and the
    # spectral norm's vectors come back too, or the parameters after step 25 would differ.
    assert_killed_run_resumes_identically(tmp_path, QUICK)

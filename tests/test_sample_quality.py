"""The Fréchet distance: zero for a set against itself, closed forms, growth with noise."""

import itertools

import numpy as np
import pytest

from jaxdl.engine.sample_quality import frechet_distance, gaussian_statistics


def _features(seed: int, n: int = 500, d: int = 8) -> np.ndarray:
    """Samples `seed` of one fixed correlated Gaussian."""
    fixed = np.random.default_rng(0)
    mixing, mean = fixed.normal(size=(d, d)), fixed.normal(size=d)
    return np.random.default_rng(seed).normal(size=(n, d)) @ mixing + mean


def test_a_set_against_itself_is_zero():
    stats = gaussian_statistics(_features(0))
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-8)


def test_closed_forms():
    # Means apart by m, equal covariances: m^2. Scalar Gaussians: (m1-m2)^2 + (s1-s2)^2.
    cov = np.cov(_features(1), rowvar=False)
    shift = np.arange(8.0)
    assert frechet_distance((np.zeros(8), cov), (shift, cov)) == pytest.approx(
        np.sum(shift**2), rel=1e-9
    )
    one_d = frechet_distance((np.array([1.0]), np.array([[4.0]])), (np.array([3.0]), np.eye(1)))
    assert one_d == pytest.approx(2.0**2 + (2.0 - 1.0) ** 2, rel=1e-12)


def test_it_grows_with_added_noise():
    real = _features(2)
    reference = gaussian_statistics(_features(3))  # Held-out samples of the same distribution.
    rng = np.random.default_rng(4)
    noise = rng.normal(size=real.shape)
    distances = [
        frechet_distance(reference, gaussian_statistics(real + scale * noise))
        for scale in (0.0, 0.5, 1.0, 2.0, 4.0)
    ]
    assert all(a < b for a, b in itertools.pairwise(distances))
    assert distances[0] < 0.1 * distances[-1]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="features must be"):
        gaussian_statistics(np.zeros((1, 4)))


def test_penultimate_features_are_the_input_of_the_last_dense_layer():
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from jaxdl.engine.quality_monitor import penultimate_features

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            hidden = nn.relu(nn.Dense(5, name="hidden")(x.reshape(x.shape[0], -1)))
            return nn.Dense(3, name="head")(hidden)

    x = jax.random.normal(jax.random.PRNGKey(0), (4, 2, 2, 1))
    variables = Net().init(jax.random.PRNGKey(1), x, train=False)
    features, logits = penultimate_features(Net().apply, variables, x)
    hidden = variables["params"]["hidden"]
    expected = jax.nn.relu(x.reshape(4, -1) @ hidden["kernel"] + hidden["bias"])
    np.testing.assert_allclose(features, expected, rtol=1e-6)
    np.testing.assert_allclose(logits, Net().apply(variables, x, train=False), rtol=1e-6)
    assert jnp.shape(features) == (4, 5)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("--config.sample_quality.classifier_workdir={missing}", "no run there"),
        ("--config.sample_quality.num_samples=1", "sample_quality.num_samples"),
        ("--config.sample_quality.classifier_config=digits_vae", "name a classification run"),
    ],
)
def test_bad_classifier_settings_exit_2_before_the_workdir_is_written(
    tmp_path, capsys, override, words
):
    from jaxdl.cli import main

    run = tmp_path / "run"
    flag = override.format(missing=tmp_path / "missing")
    code = main(
        ["train", "--config", "experiments/digits_vae.py:quick", "--workdir", str(run), flag]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxdl: error: ") and words in err
    assert not run.exists()

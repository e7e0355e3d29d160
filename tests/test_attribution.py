"""The attribution methods' maths on tiny models, against finite differences and exact cases,
and reading a Flax model's layers from outside (probes.py)."""

from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models.cnn import CNN
from jaxdl.understanding import attribution, features
from jaxdl.understanding.probes import Classifier

CLASSES = 3


def tiny_mlp(seed: int = 0):
    """A smooth (tanh) two-layer net over (B, 2, 3) inputs, so finite differences converge."""
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    w1 = jax.random.normal(k1, (6, 5))
    w2 = jax.random.normal(k2, (5, CLASSES))
    b1 = jax.random.normal(k3, (5,)) * 0.1

    def logits_fn(x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ w1 + b1) @ w2

    return logits_fn


def inputs_and_targets():
    x = jax.random.uniform(jax.random.key(7), (4, 2, 3), minval=-1.0, maxval=1.0)
    return x, jnp.array([0, 1, 2, 1])


def finite_difference_gradient(logits_fn, x, targets, eps=1e-3):
    """Central differences of each example's target logit, one input value at a time."""
    x = np.asarray(x, np.float64)
    grads = np.zeros_like(x)
    for index in np.ndindex(x.shape[1:]):
        step = np.zeros_like(x)
        step[(slice(None), *index)] = eps
        up = attribution.target_logits(logits_fn(jnp.asarray(x + step, jnp.float32)), targets)
        down = attribution.target_logits(logits_fn(jnp.asarray(x - step, jnp.float32)), targets)
        grads[(slice(None), *index)] = (np.asarray(up) - np.asarray(down)) / (2 * eps)
    return grads


def test_saliency_and_gradxinput_match_finite_differences():
    logits_fn, (x, targets) = tiny_mlp(), inputs_and_targets()
    expected = finite_difference_gradient(logits_fn, x, targets)
    np.testing.assert_allclose(
        attribution.saliency(logits_fn, x, targets), np.abs(expected), atol=2e-3
    )
    np.testing.assert_allclose(
        attribution.gradxinput(logits_fn, x, targets), np.asarray(x) * expected, atol=2e-3
    )


def test_smoothgrad_is_the_mean_finite_difference_gradient_at_the_noisy_points():
    logits_fn, (x, targets) = tiny_mlp(), inputs_and_targets()
    key, samples, noise = jax.random.key(3), 5, 0.2
    draws = attribution.smoothgrad_noise(key, x, samples, noise)
    expected = np.mean(
        [finite_difference_gradient(logits_fn, x + eps, targets) for eps in draws], axis=0
    )
    got = attribution.smoothgrad(logits_fn, x, targets, key, samples, noise)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    # The noise is `noise` times each example's range, so it is not the same for all examples.
    spread = np.ptp(np.asarray(x).reshape(4, -1), axis=1)
    measured = np.asarray(draws).std(axis=(0, 2, 3))
    np.testing.assert_allclose(measured / spread, noise, rtol=0.5)


def test_integrated_gradients_match_a_trapezoid_of_finite_difference_gradients():
    logits_fn, (x, targets) = tiny_mlp(), inputs_and_targets()
    baseline, steps = jnp.full((2, 3), 0.25), 4
    alphas = np.linspace(0.0, 1.0, steps + 1)
    grads = [
        finite_difference_gradient(logits_fn, baseline + a * (x - baseline), targets)
        for a in alphas
    ]
    mean = (0.5 * grads[0] + sum(grads[1:-1]) + 0.5 * grads[-1]) / steps
    got = attribution.integrated_gradients(logits_fn, x, targets, baseline, steps, "uniform")
    np.testing.assert_allclose(got, (np.asarray(x) - 0.25) * mean, atol=2e-3)


def test_integrated_gradients_completeness_on_a_smooth_model():
    logits_fn, (x, targets) = tiny_mlp(), inputs_and_targets()
    baseline = jnp.zeros((2, 3))
    maps = attribution.integrated_gradients(logits_fn, x, targets, baseline, steps=128)
    errors = attribution.completeness_error(logits_fn, x, targets, baseline, maps)
    assert errors.shape == (4,)
    assert float(errors.max()) < 1e-3
    # Too few steps leave a visible error: the check measures something.
    coarse = attribution.integrated_gradients(logits_fn, x, targets, baseline, steps=1)
    assert (
        float(attribution.completeness_error(logits_fn, x, targets, baseline, coarse).max()) > 1e-3
    )


def kinked_model(kinks: np.ndarray):
    """Logit = sum_k relu(mean(x) - kink_k) (and its negation): along the path from a zero
    baseline to x = 1 the gradient jumps at alpha = each kink, so the trapezoid rule's error
    comes from the intervals holding the kinks."""

    def logits_fn(x):
        m = x.reshape(x.shape[0], -1).mean(axis=1, keepdims=True)
        value = jax.nn.relu(m - jnp.asarray(kinks)).sum(axis=1)
        return jnp.stack([value, -value], axis=1)

    return logits_fn


def test_adaptive_rule_bisects_the_intervals_holding_the_gradient_jumps():
    kinks = np.array([0.3, 0.55, 0.61, 0.87])
    logits_fn = kinked_model(kinks)
    x, targets, baseline = jnp.ones((2, 2, 3)), jnp.array([0, 1]), jnp.zeros((2, 3))
    errors = {
        rule: float(
            attribution.completeness_error(
                logits_fn,
                x,
                targets,
                baseline,
                attribution.integrated_gradients(logits_fn, x, targets, baseline, 64, rule),
            ).max()
        )
        for rule in attribution.QUADRATURES
    }
    assert errors["uniform"] > 1e-3  # The kinks sit off the even grid.
    assert errors["adaptive"] < errors["uniform"] / 10
    # The points: steps + 1 of them in [0, 1] with both ends, bunched around the kinks.
    alphas, grads = attribution._adaptive_points(
        logits_fn, baseline[None].repeat(2, 0), x - baseline, targets, 64
    )
    assert alphas.shape == (2, 65) and grads.shape == (65, 2, 2, 3)
    points = np.sort(np.asarray(alphas[0]))
    assert points[0] == 0.0 and points[-1] == 1.0 and len(np.unique(points)) == 65
    gaps = np.diff(points)
    narrowest = points[np.argmin(gaps)]
    assert np.abs(kinks - narrowest).min() < gaps.min() * 2


def test_refinement_redoes_only_the_examples_above_the_tolerance():
    logits_fn = kinked_model(np.array([0.3, 0.55, 0.61, 0.87]))
    # Example 0 runs through the kinks; example 1 stays below them (a linear path, exact).
    x, targets = jnp.stack([jnp.ones((2, 3)), jnp.full((2, 3), 0.25)]), jnp.array([0, 0])
    baseline = jnp.zeros((2, 3))
    plain = attribution.integrated_gradients(logits_fn, x, targets, baseline, 8, "uniform")
    maps, errors, steps = attribution.refined_integrated_gradients(
        logits_fn, x, targets, baseline, 8, "uniform", 1e-3, 1024
    )
    assert steps[1] == 8 and steps[0] > 8
    np.testing.assert_array_equal(maps[1], plain[1])
    assert (
        errors[0]
        <= 1e-3
        < float(attribution.completeness_error(logits_fn, x, targets, baseline, plain)[0])
    )
    # Tolerance 0 never refines; a low --max-steps stops refining with the error above.
    _, _, never = attribution.refined_integrated_gradients(
        logits_fn, x, targets, baseline, 8, "uniform", 0.0, 1024
    )
    _, capped_errors, capped = attribution.refined_integrated_gradients(
        logits_fn, x, targets, baseline, 8, "uniform", 1e-6, 16
    )
    np.testing.assert_array_equal(never, 8)
    assert capped[0] == 16 and capped_errors[0] > 1e-6


def test_integrated_gradients_are_exact_where_the_gradient_is_linear_on_the_path():
    # f_c(x) = sum(a_c * x**2): the gradient is linear in alpha, so the trapezoid rule is exact
    # with one step and IG_i = a_ci * (x_i**2 - b_i**2).
    a = jax.random.normal(jax.random.key(1), (CLASSES, 6))

    def logits_fn(x):
        return (x.reshape(x.shape[0], 1, -1) ** 2 * a).sum(axis=-1)

    x, targets = inputs_and_targets()
    baseline = jnp.full((2, 3), -0.5)
    maps = attribution.integrated_gradients(logits_fn, x, targets, baseline, steps=1)
    expected = np.asarray(a)[np.asarray(targets)].reshape(4, 2, 3) * (np.asarray(x) ** 2 - 0.25)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    errors = attribution.completeness_error(logits_fn, x, targets, baseline, maps)
    assert float(errors.max()) < 1e-5


def test_gradcam_weights_channels_by_their_mean_gradient():
    # Logits = the spatial mean of a (B, 4, 4, 2) activation times W: d logit / d A_c is
    # W[c, t] / 16 everywhere, so the map is ReLU(sum_c W[c, t] / 16 * A_c).
    activation = jax.random.normal(jax.random.key(2), (3, 4, 4, 2))
    weights = jnp.array([[1.0, -2.0, 0.5], [0.5, 1.0, -1.0]])

    def layer_fn(inputs, delta):
        layer = inputs + delta
        return layer.mean(axis=(1, 2)) @ weights, layer

    targets = jnp.array([0, 1, 2])
    cam = attribution.gradcam(layer_fn, activation, targets)
    expected = jax.nn.relu((activation * weights[:, targets].T[:, None, None, :] / 16).sum(-1))
    np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-7)
    assert float(cam.min()) >= 0.0


@pytest.fixture(scope="module")
def cnn_classifier():
    model = CNN(num_classes=CLASSES, conv_features=(4, 6), batch_norm=True)
    x = jax.random.uniform(jax.random.key(5), (5, 8, 8, 1))
    variables = nn.meta.unbox(model.init(jax.random.key(0), x, train=False))
    state = SimpleNamespace(
        apply_fn=model.apply,
        params=variables["params"],
        model_state={"batch_stats": variables["batch_stats"]},
    )
    return Classifier(state), x


def test_probes_find_layers_features_and_perturb_a_layer(cnn_classifier):
    classifier, x = cnn_classifier
    assert classifier.convolutions(x) == ["Conv_0", "Conv_1"]
    logits = classifier.logits(x)
    # The penultimate features through the head give the logits back.
    head = classifier.params["Dense_0"]
    feats = classifier.penultimate(x)
    assert feats.shape == (5, 6)
    np.testing.assert_allclose(feats @ head["kernel"] + head["bias"], logits, rtol=1e-5, atol=1e-5)
    layer_fn = classifier.with_layer("Conv_1")
    same, activation = layer_fn(x, jnp.float32(0.0))
    np.testing.assert_allclose(same, logits, rtol=1e-6)
    assert activation.shape == (5, 4, 4, 6)
    moved, _ = layer_fn(x, jnp.ones(activation.shape))
    assert not np.allclose(moved, logits)
    cam = attribution.gradcam(layer_fn, x, jnp.argmax(logits, -1))
    assert cam.shape == (5, 8, 8) and float(cam.min()) >= 0.0
    first, kernel = classifier.first_layer(x)
    assert (first.path, first.kind, kernel.shape) == ("Conv_0", "Conv", (3, 3, 1, 4))


class _TokenModel(nn.Module):
    """Word + position embeddings (both nn.Embed, as BERT's), mean-pooled, then a head."""

    @nn.compact
    def __call__(self, ids, train: bool):
        del train
        words = nn.Embed(11, 4, name="words")(ids)
        positions = nn.Embed(ids.shape[1], 4, name="positions")(jnp.arange(ids.shape[1]))
        return nn.Dense(CLASSES)(jnp.tanh(words + positions).mean(axis=1))


def test_token_probes_read_and_replace_the_word_embeddings():
    model, ids = _TokenModel(), jnp.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    params = model.init(jax.random.key(0), ids, train=False)["params"]
    classifier = Classifier(SimpleNamespace(apply_fn=model.apply, params=params, model_state={}))
    embedded = classifier.token_embeddings(ids)
    # The word embeddings (the first call from the ids to a vector per token), not the positions.
    np.testing.assert_array_equal(embedded, params["words"]["embedding"][ids])
    logits_fn = classifier.logits_of_embeddings(ids)
    np.testing.assert_allclose(logits_fn(embedded), classifier.logits(ids), rtol=1e-6)
    assert not np.allclose(logits_fn(embedded + 1.0), classifier.logits(ids))
    # IG over the embeddings: complete (a smooth model) and zero for an unchanged token.
    targets = jnp.array([0, 2])
    baseline = jnp.zeros_like(embedded[0]).at[2].set(embedded[0, 2])
    maps = attribution.integrated_gradients(logits_fn, embedded, targets, baseline)
    assert (
        float(attribution.completeness_error(logits_fn, embedded, targets, baseline, maps).max())
        < 1e-3
    )
    np.testing.assert_allclose(maps[0, 2], 0.0, atol=1e-7)


def test_feature_helpers_shapes_and_seeding():
    filters = features.conv_filters(np.random.default_rng(0).normal(size=(3, 3, 1, 4)))
    assert filters.shape == (4, 3, 3, 1) and filters.min() == 0.0 and filters.max() == 1.0
    rows = features.dense_filters(np.ones((64, 7)) * np.arange(64)[:, None], (8, 8, 1))
    assert rows.shape == (7, 8, 8, 1)
    points = np.random.default_rng(0).normal(size=(40, 5))
    for method in features.EMBEDDINGS:
        first = features.embed_2d(points, method, seed=0)
        assert first.shape == (40, 2)
        np.testing.assert_allclose(first, features.embed_2d(points, method, seed=0))
    indices, distances = features.nearest(points[:3], points, 2)
    assert indices[:, 0].tolist() == [0, 1, 2] and np.allclose(distances[:, 0], 0.0)

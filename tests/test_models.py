"""Model families: shapes and dtypes of every option, state collections, dropout, config errors."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import linen as nn
from flax.core import meta

from jaxdl.errors import UserInputError
from jaxdl.models import CNN, MLP, MODEL_NAMES, LeNet5, build_model, model_fields
from jaxdl.models.layers import ACTIVATIONS
from jaxdl.models.patch_conv import patch_conv

NUM_CLASSES = 5
BATCH = 3


def _init(model, shape, *, seed=0):
    """Real variables and a random input batch (eager: op caches are shared across tests)."""
    x = jax.random.normal(jax.random.key(seed), (BATCH, *shape), jnp.float32)
    rngs = {"params": jax.random.key(1), "dropout": jax.random.key(2)}
    return model.init(rngs, x, train=False), x


def _abstract(model, shape, *, train=False):
    """(logits, variables) as shapes and dtypes only: tracing without compiling keeps the
    option matrix fast on CPU; the behaviour tests below run the models for real."""
    x = jax.ShapeDtypeStruct((BATCH, *shape), jnp.float32)
    rngs = {"params": jax.random.key(1), "dropout": jax.random.key(2)}
    # Parameters come boxed with their logical axis names (for sharding); the values inside.
    variables = meta.unbox(jax.eval_shape(functools.partial(model.init, train=False), rngs, x))

    def apply(variables, x):
        logits, _ = model.apply(
            variables, x, train=train, rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"]
        )
        return logits

    return jax.eval_shape(apply, variables, x), variables


def _assert_logits(logits):
    chex.assert_shape(logits, (BATCH, NUM_CLASSES))
    chex.assert_type(logits, jnp.float32)
    if isinstance(logits, jax.Array):
        chex.assert_tree_all_finite(logits)


def _build(**fields):
    return build_model(ml_collections.ConfigDict(fields), num_classes=NUM_CLASSES)


@pytest.mark.parametrize(
    ("fields", "shape"),
    [
        ({}, (12,)),
        ({}, (8, 8, 1)),
        ({"hidden_sizes": ()}, (6,)),
        ({"hidden_sizes": [16, 8, 4], "batch_norm": True, "dropout_rate": 0.5}, (8, 8, 1)),
    ],
)
@pytest.mark.parametrize("train", [False, True])
def test_mlp_shapes(fields, shape, train):
    logits, _ = _abstract(_build(name="mlp", **fields), shape, train=train)
    _assert_logits(logits)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation(name):
    logits, _ = _abstract(MLP(NUM_CLASSES, hidden_sizes=(4,), activation=name), (6,))
    _assert_logits(logits)


@pytest.mark.parametrize(
    ("fields", "shape"),
    [
        ({}, (16,)),  # (B, L) -> treated as one channel
        ({}, (16, 2)),  # 1-D conv
        ({}, (8, 8, 1)),  # 2-D conv
        ({"pooling": "avg", "global_pool": "max"}, (8, 8, 3)),
        ({"pooling": "none", "global_pool": "flatten", "batch_norm": False}, (6, 6, 1)),
        ({"global_pool": "flatten", "dense_sizes": (8, 4), "dropout_rate": 0.3}, (16, 2)),
        ({"convs_per_stage": 2, "kernel_size": 5, "activation": "gelu"}, (7, 5, 2)),
    ],
)
@pytest.mark.parametrize("train", [False, True])
def test_cnn_shapes(fields, shape, train):
    model = _build(**{"name": "cnn", "conv_features": (4, 8), **fields})
    logits, _ = _abstract(model, shape, train=train)
    _assert_logits(logits)


def test_cnn_rank_picks_convolution():
    _, vars_1d = _abstract(CNN(NUM_CLASSES, conv_features=(4,)), (16, 2))
    _, vars_2d = _abstract(CNN(NUM_CLASSES, conv_features=(4,)), (8, 8, 2))
    chex.assert_shape(vars_1d["params"]["Conv_0"]["kernel"], (3, 2, 4))
    chex.assert_shape(vars_2d["params"]["Conv_0"]["kernel"], (3, 3, 2, 4))


@pytest.mark.parametrize(
    ("shape", "stages", "flat_features"),
    [
        ((8, 8, 1), 2, 2 * 2 * 4),  # 8x8 -> 4x4 -> 2x2
        ((8, 8, 1), 5, 1 * 1 * 4),  # stops at 1x1 rather than failing
        ((1, 9, 1), 3, 1 * 1 * 4),  # the size-1 height is never pooled: 9 -> 4 -> 2 -> 1
        ((9, 2), 2, 2 * 4),  # 1-D: 9 -> 4 -> 2
    ],
)
def test_cnn_pooling_shrinks_spatial_dims(shape, stages, flat_features):
    model = CNN(NUM_CLASSES, conv_features=(4,) * stages, global_pool="flatten", batch_norm=False)
    _, variables = _abstract(model, shape)
    chex.assert_shape(variables["params"]["Dense_0"]["kernel"], (flat_features, NUM_CLASSES))


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize(
    ("shape", "flat_features"),
    [
        ((28, 28, 1), 5 * 5 * 16),  # 28 -> pool 14 -> VALID conv 10 -> pool 5
        ((12, 12, 3), 1 * 1 * 16),  # the smallest input: 12 -> 6 -> 2 -> 1
    ],
)
def test_lenet5_shapes(pooling, shape, flat_features):
    logits, variables = _abstract(LeNet5(NUM_CLASSES, pooling=pooling), shape)
    _assert_logits(logits)
    assert set(variables) == {"params"}
    params = variables["params"]
    chex.assert_shape(params["Conv_0"]["kernel"], (5, 5, shape[-1], 6))
    chex.assert_shape(params["Conv_1"]["kernel"], (5, 5, 6, 16))
    chex.assert_shape(params["Dense_0"]["kernel"], (flat_features, 120))
    chex.assert_shape(params["Dense_1"]["kernel"], (120, 84))
    chex.assert_shape(params["Dense_2"]["kernel"], (84, NUM_CLASSES))


@pytest.mark.parametrize(
    ("fields", "shape"),
    [
        ({"name": "mlp", "batch_norm": True, "dropout_rate": 0.1}, (8, 8, 1)),
        ({"name": "cnn", "conv_features": (4, 8), "dense_sizes": (8,)}, (8, 8, 1)),
        ({"name": "cnn", "conv_features": (4,)}, (16,)),
        ({"name": "lenet5"}, (12, 12, 1)),
    ],
)
@pytest.mark.parametrize("train", [False, True])
def test_bfloat16_compute_float32_params_and_logits(fields, shape, train):
    model = _build(dtype="bfloat16", **fields)
    x = jax.ShapeDtypeStruct((BATCH, *shape), jnp.float32)
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    chex.assert_type(jax.tree.leaves(variables), jnp.float32)
    logits, state = jax.eval_shape(
        functools.partial(
            model.apply,
            train=train,
            rngs={"dropout": jax.random.key(1)},
            capture_intermediates=True,
            mutable=["intermediates", "batch_stats"],
        ),
        variables,
        x,
    )
    _assert_logits(logits)
    # The layers compute in bfloat16; only the final cast returns float32.
    chex.assert_type(state["intermediates"]["Dense_0"]["__call__"][0], jnp.bfloat16)
    chex.assert_type(jax.tree.leaves(state.get("batch_stats", {})), jnp.float32)


def test_bfloat16_runs():
    model = MLP(NUM_CLASSES, hidden_sizes=(4,), batch_norm=True, dtype=jnp.bfloat16)
    variables, x = _init(model, (6,))
    logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    _assert_logits(logits)


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (MLP(NUM_CLASSES, hidden_sizes=(4, 4), batch_norm=True), (6,)),
        (CNN(NUM_CLASSES, conv_features=(4, 4), convs_per_stage=2), (8, 8, 1)),
        (CNN(NUM_CLASSES, conv_features=(4,)), (16, 2)),
    ],
)
def test_batch_norm_state(model, shape):
    variables, x = _init(model, shape)
    assert set(variables) == {"params", "batch_stats"}
    num_norms = len(variables["batch_stats"])
    assert num_norms == (
        2 if isinstance(model, MLP) else len(model.conv_features) * model.convs_per_stage
    )
    # Eval reads running statistics without updating them; train updates them.
    logits = model.apply(variables, x, train=False)
    _assert_logits(logits)
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    changed = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], updates["batch_stats"]
    )
    assert all(jax.tree.leaves(changed))


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (MLP(NUM_CLASSES, hidden_sizes=(4,), batch_norm=False), (6,)),
        (CNN(NUM_CLASSES, conv_features=(4,), batch_norm=False), (8, 8, 1)),
    ],
)
def test_no_batch_norm_no_state(model, shape):
    variables, _ = _init(model, shape)
    assert set(variables) == {"params"}


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (MLP(NUM_CLASSES, hidden_sizes=(32,), dropout_rate=0.5), (6,)),
        (CNN(NUM_CLASSES, conv_features=(4,), dense_sizes=(8,), dropout_rate=0.5), (16, 2)),
    ],
)
def test_dropout(model, shape):
    variables, x = _init(model, shape)

    def train_logits(seed):
        logits, _ = model.apply(
            variables,
            x,
            train=True,
            rngs={"dropout": jax.random.key(seed)},
            mutable=["batch_stats"],
        )
        return logits

    chex.assert_trees_all_equal(train_logits(0), train_logits(0))
    assert not jnp.allclose(train_logits(0), train_logits(1))
    # Eval needs no dropout rng and gives the same answer every time.
    chex.assert_trees_all_equal(
        model.apply(variables, x, train=False), model.apply(variables, x, train=False)
    )


def test_build_model_passes_fields():
    model = _build(name="cnn", conv_features=[4, 8], kernel_size=5, pooling="avg")
    assert isinstance(model, CNN)
    assert model.num_classes == NUM_CLASSES
    assert model.conv_features == (4, 8)  # lists become tuples: modules stay hashable
    assert (model.kernel_size, model.pooling) == (5, "avg")
    hash(model)
    assert model.dtype == jnp.float32


def test_model_names_and_fields():
    images = ("mlp", "cnn", "lenet5", "resnet", "vit")
    sequences = ("rnn", "gpt", "bert", "seq2seq")
    generative = ("vae", "gan", "unet")
    graphs = ("gnn",)
    assert images + sequences + generative + graphs == MODEL_NAMES
    assert "image_shape" not in model_fields("vae")  # The task sets it from the dataset.
    assert model_fields("lenet5") == ("activation", "pooling", "dtype")
    for name in MODEL_NAMES:
        # Both come from the dataset (build_model's arguments), never from the model config.
        assert "num_classes" not in model_fields(name)
        assert "vocab_size" not in model_fields(name)
        assert "dtype" in model_fields(name)


def test_vocab_size_comes_from_the_dataset_not_the_config():
    model = build_model(
        ml_collections.ConfigDict({"name": "gpt", "hidden_size": 16, "num_heads": 2}),
        num_classes=7,
        vocab_size=9,
    )
    assert (model.num_classes, model.vocab_size) == (7, 9)
    with pytest.raises(UserInputError, match=r"model\.vocab_size is taken from the dataset"):
        build_model(ml_collections.ConfigDict({"name": "gpt", "vocab_size": 9}), num_classes=7)


def test_unknown_model_name():
    with pytest.raises(UserInputError, match=r"unknown model 'lenet'.*lenet5.*Registered models"):
        _build(name="lenet")


def test_missing_model_name():
    with pytest.raises(UserInputError, match=r"model\.name is not set"):
        _build(hidden_sizes=(4,))


def test_unknown_field():
    with pytest.raises(
        UserInputError, match=r"model\.hidden_size\b.*Did you mean: hidden_sizes"
    ) as e:
        _build(name="mlp", hidden_size=(4,))
    assert "Valid fields: hidden_sizes, activation, dropout_rate, batch_norm, dtype" in str(e.value)
    with pytest.raises(UserInputError, match=r"model\.batch_norm.*'lenet5'"):
        _build(name="lenet5", batch_norm=True)


def test_num_classes_in_config():
    with pytest.raises(UserInputError, match=r"model\.num_classes is taken from the dataset"):
        _build(name="mlp", num_classes=3)


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if "activation" in model_fields(n)])
def test_unknown_activation(name):
    with pytest.raises(UserInputError, match=r"model\.activation='rleu'.*Did you mean: relu"):
        _build(name=name, activation="rleu")


@pytest.mark.parametrize(
    ("fields", "pattern"),
    [
        ({"name": "cnn", "pooling": "mean"}, r"model\.pooling='mean'.*max, avg, none"),
        ({"name": "lenet5", "pooling": "none"}, r"model\.pooling='none'.*avg, max"),
        ({"name": "cnn", "global_pool": "sum"}, r"model\.global_pool='sum'"),
        ({"name": "cnn", "conv_features": ()}, r"model\.conv_features is empty"),
        ({"name": "mlp", "hidden_sizes": 256}, r"model\.hidden_sizes=256 must be a sequence"),
        ({"name": "cnn", "dense_sizes": (8, 0)}, r"model\.dense_sizes=\(8, 0\)"),
        ({"name": "cnn", "kernel_size": 0}, r"model\.kernel_size=0 must be a positive integer"),
        ({"name": "cnn", "convs_per_stage": 1.5}, r"model\.convs_per_stage"),
        ({"name": "mlp", "dropout_rate": 1.0}, r"model\.dropout_rate=1\.0 must be .*\[0, 1\)"),
        ({"name": "mlp", "dtype": "float64"}, r"model\.dtype='float64'.*bfloat16"),
        ({"name": "cnn", "dtype": "int8"}, r"model\.dtype='int8'"),
    ],
)
def test_bad_field_values(fields, pattern):
    with pytest.raises(UserInputError, match=pattern):
        _build(**fields)


def test_cnn_rejects_unsupported_rank():
    with pytest.raises(UserInputError, match=r"model 'cnn' takes inputs of shape"):
        _abstract(CNN(NUM_CLASSES, conv_features=(4,)), (4, 4, 4, 1))


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ((11, 28, 1), r"at least 12x12; got 11x28"),
        ((8, 8, 1), r"at least 12x12; got 8x8.*model\.name='cnn'"),
        ((28, 1), r"takes images of shape \(batch, height, width, channels\)"),
    ],
)
def test_lenet5_input_errors(shape, pattern):
    with pytest.raises(UserInputError, match=pattern):
        _abstract(LeNet5(NUM_CLASSES), shape)


@pytest.mark.parametrize(
    "input_shape, kernel, padding",
    [
        ((4, 8, 8, 3), (3, 3), "SAME"),
        ((4, 9, 7, 2), (5, 5), "SAME"),  # Odd sizes, a wider kernel.
        ((4, 12, 12, 1), (5, 5), "VALID"),  # LeNet-5's second conv.
        ((4, 10, 3), (3,), "SAME"),  # 1-D signals.
        ((2, 6, 6, 2), (2, 2), "SAME"),  # Even kernel: the extra pad goes after.
        ((2, 6, 6, 2), (3, 3), ((2, 0), (1, 1))),  # Explicit, uneven padding.
    ],
)
def test_patch_conv_matches_xla_convolution_and_its_gradients(input_shape, kernel, padding):
    x = _normal(input_shape, seed=0)
    reference = nn.Conv(5, kernel, padding=padding)
    patches = nn.Conv(5, kernel, padding=padding, conv_general_dilated=patch_conv)
    params = _params_like(reference, x)
    # The same parameter tree: checkpoints of either implementation load into the other.
    chex.assert_trees_all_equal_shapes(params, _params_like(patches, x))

    @jax.jit
    def outputs_and_grads(params, x):
        def loss(module, params, x):
            return jnp.sum(jnp.sin(module.apply(params, x)))

        return [
            (module.apply(params, x), jax.grad(functools.partial(loss, module), (0, 1))(params, x))
            for module in (patches, reference)
        ]

    (out, grads), (expected_out, expected_grads) = outputs_and_grads(params, x)
    chex.assert_trees_all_close(out, expected_out, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(grads, expected_grads, rtol=1e-4, atol=1e-4)


def test_patch_conv_in_flax_conv_matches_strided_grouped_and_dilated_convs():
    # Groups and strides go to XLA unchanged; dilation is patches (tests/test_patch_conv.py).
    x = _normal((2, 8, 8, 4), seed=0)
    for fields in ({"strides": (2, 2)}, {"feature_group_count": 2}, {"kernel_dilation": 2}):
        reference = nn.Conv(4, (3, 3), **fields)
        patches = nn.Conv(4, (3, 3), conv_general_dilated=patch_conv, **fields)
        params = _params_like(reference, x)
        chex.assert_trees_all_close(
            patches.apply(params, x), reference.apply(params, x), rtol=1e-5, atol=1e-5
        )


def _normal(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _params_like(module: nn.Module, x: np.ndarray):
    """Random parameters without compiling a random initialiser (seconds each on CPU)."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
    return jax.tree.map(lambda s: _normal(s.shape, seed=s.size), shapes)

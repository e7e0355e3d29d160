"""Mesh axes, the logical-name rule table and state layouts over the 8 virtual CPU devices."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta
from jax.sharding import PartitionSpec as P

from jaxdl import config as config_lib
from jaxdl.engine import sharding
from jaxdl.errors import UserInputError
from jaxdl.models import build_model


def _sizes(data=-1, fsdp=1, tensor=1):
    return {"data": data, "fsdp": fsdp, "tensor": tensor}


def test_mesh_axes_from_sizes_with_one_left_to_fill():
    assert jax.device_count() == 8
    assert dict(sharding.make_mesh().shape) == {"data": 8, "fsdp": 1, "tensor": 1}
    assert dict(sharding.make_mesh(_sizes(4, 2)).shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    assert dict(sharding.make_mesh(_sizes(2, 1, -1)).shape) == {"data": 2, "fsdp": 1, "tensor": 4}
    assert sharding.make_mesh(num_devices=2).size == 2
    with pytest.raises(UserInputError, match=r"mesh\.num_devices=16"):
        sharding.make_mesh(num_devices=16)


def test_mesh_product_must_be_the_device_count_and_says_both_numbers():
    with pytest.raises(
        UserInputError, match=r"data=4 x fsdp=1 x tensor=1 asks for 4 devices, but the mesh has 8"
    ):
        sharding.make_mesh(_sizes(4))
    with pytest.raises(UserInputError, match=r"a multiple of 3 devices, but the mesh has 8"):
        sharding.make_mesh(_sizes(-1, 3))


def test_legacy_fsdp_strategy_means_everything_on_fsdp():
    config = config_lib.base_config()
    config.mesh.strategy = "fsdp"
    assert config_lib.mesh_axis_sizes(config) == _sizes(1, -1)
    config.mesh.data = 4
    with pytest.raises(UserInputError, match=r"mesh.strategy: 'fsdp' is the pre-0.3 spelling"):
        config_lib.validate(config)


def test_batch_divisibility_error_names_the_field_and_a_fix():
    mesh = sharding.make_mesh(_sizes(2, 2, 2))
    sharding.check_batch_divisible(12, mesh, "data.batch_size")  # 4 batch shards, not 8.
    with pytest.raises(UserInputError, match=r"data.batch_size=10 .* 4 devices.*8 or 12"):
        sharding.check_batch_divisible(10, mesh, "data.batch_size")


def test_batch_is_split_over_data_and_fsdp():
    mesh = sharding.make_mesh(_sizes(2, 2, 2))
    batch = sharding.put_batch(
        {"input": np.zeros((16, 3), np.float32)}, sharding.batch_sharding(mesh)
    )
    assert batch["input"].sharding.spec == P(("data", "fsdp"))
    assert {s.data.shape for s in batch["input"].addressable_shards} == {(4, 3)}


def _mlp_layout(mesh, hidden=(256, 256)):
    model = build_model(
        config_lib.ml_collections.ConfigDict({"name": "mlp", "hidden_sizes": hidden}),
        num_classes=10,
    )
    boxed = jax.eval_shape(
        functools.partial(model.init, train=False), jax.random.PRNGKey(0), jnp.zeros((1, 64))
    )
    shapes = meta.unbox(boxed)
    specs = sharding.state_shardings(shapes, sharding.logical_names(boxed), mesh)
    return jax.tree.map(lambda s: s.spec, specs)["params"]


def test_rule_table_splits_mlp_megatron_style():
    layout = _mlp_layout(sharding.make_mesh(_sizes(2, 1, 4)))
    assert layout["Dense_0"] == {"kernel": P(None, "tensor"), "bias": P("tensor")}  # Columns.
    assert layout["Dense_1"] == {"kernel": P("tensor", None), "bias": P(None)}  # Rows.
    assert layout["Dense_2"]["kernel"] == P(None, None)  # Logits stay whole.
    layout = _mlp_layout(sharding.make_mesh(_sizes(2, 2, 2)))
    assert layout["Dense_0"]["kernel"] == P("fsdp", "tensor")
    assert layout["Dense_1"]["kernel"] == P("tensor", "fsdp")
    assert layout["Dense_1"]["bias"] == P(None)  # Too small to be worth splitting.


def test_tensor_axis_that_does_not_divide_a_parameter_names_it():
    mesh = sharding.make_mesh(_sizes(1, 1, 8))
    with pytest.raises(
        UserInputError,
        match=r"mesh.tensor=8 does not divide dimension \d \(size 12, logical axis 'mlp'\) "
        r"of parameter params/Dense_0/(bias|kernel); use a tensor size that divides it \(2, 3, 4, 6\)",
    ):
        _mlp_layout(mesh, hidden=(12,))


def test_a_logical_name_no_rule_maps_is_refused():
    mesh = sharding.make_mesh()
    shapes = {"w": jax.ShapeDtypeStruct((8, 8), jnp.float32)}
    with pytest.raises(
        UserInputError, match=r"parameter w has logical axis 'hiddn'.*LOGICAL_AXIS_RULES"
    ):
        sharding.state_shardings(shapes, {"w": ("embed", "hiddn")}, mesh)


def test_leaves_without_names_follow_the_shape_rule():
    mesh = sharding.make_mesh(_sizes(1, 8))
    state = {
        "big": jax.ShapeDtypeStruct((100, 512), jnp.float32),
        "odd": jax.ShapeDtypeStruct((4099, 3), jnp.float32),
        "small": jax.ShapeDtypeStruct((16,), jnp.float32),
        "step": jax.ShapeDtypeStruct((), jnp.int32),
    }
    names = jax.tree.map(lambda _: None, state)
    specs = jax.tree.map(lambda s: s.spec, sharding.state_shardings(state, names, mesh))
    assert specs == {"big": P(None, "fsdp"), "odd": P(), "small": P(), "step": P()}
    replicated = sharding.state_shardings(state, names, sharding.make_mesh())
    assert all(s.spec == P() for s in jax.tree.leaves(replicated))

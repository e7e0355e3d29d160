"""Mesh, batch and state layouts over the 8 virtual CPU devices that conftest.py creates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxdl.engine import sharding
from jaxdl.errors import UserInputError


def test_mesh_uses_all_devices_or_the_requested_count():
    assert jax.device_count() == 8
    assert sharding.make_mesh(0).size == 8
    assert sharding.make_mesh(2).size == 2
    with pytest.raises(UserInputError, match=r"mesh\.num_devices=16"):
        sharding.make_mesh(16)


def test_batch_divisibility_error_names_the_field_and_a_fix():
    mesh = sharding.make_mesh(0)
    sharding.check_batch_divisible(64, mesh, "data.batch_size")
    with pytest.raises(UserInputError, match=r"data.batch_size=100 .* 8 devices.*96 or 104"):
        sharding.check_batch_divisible(100, mesh, "data.batch_size")


def test_batch_is_split_over_devices():
    mesh = sharding.make_mesh(0)
    batch = sharding.put_batch(
        {"input": np.zeros((16, 3), np.float32)}, sharding.batch_sharding(mesh)
    )
    assert batch["input"].sharding.spec == P("data")
    assert {s.data.shape for s in batch["input"].addressable_shards} == {(2, 3)}


def test_fsdp_shards_large_leaves_on_a_divisible_dim_and_replicates_small_ones():
    mesh = sharding.make_mesh(0)
    state = {
        "big": jax.ShapeDtypeStruct((100, 512), jnp.float32),
        "odd": jax.ShapeDtypeStruct((4099, 3), jnp.float32),
        "small": jax.ShapeDtypeStruct((16,), jnp.float32),
        "step": jax.ShapeDtypeStruct((), jnp.int32),
    }
    specs = jax.tree.map(lambda s: s.spec, sharding.state_shardings(state, mesh, "fsdp"))
    assert specs == {"big": P(None, "data"), "odd": P(), "small": P(), "step": P()}
    replicated = sharding.state_shardings(state, mesh, "data_parallel")
    assert all(s.spec == P() for s in jax.tree.leaves(replicated))

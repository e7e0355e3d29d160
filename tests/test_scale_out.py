"""Mesh layouts, the shard_map mode, gradient accumulation and float16 loss scaling, in-process
on the 8 virtual CPU devices: each against the same run on one device."""

import functools

import chex
import flax
import jax
import numpy as np
import pytest

from jaxdl import config as config_lib
from jaxdl.cli import main
from jaxdl.engine import loop, steps, workdir
from jaxdl.engine.metrics_log import read_records
from jaxdl.engine.setup import init_state
from tests.run_helpers import REPO


def _experiment(name: str, **fields) -> config_lib.ml_collections.ConfigDict:
    """The quick variant of an experiment with `section__field=value` overrides."""
    module = {}
    exec((REPO / "experiments" / f"{name}.py").read_text(), module)
    config = module["get_config"]("quick")
    config.train.progress_bar = False
    for key, value in fields.items():
        section, field = key.split("__")
        config[section][field] = value
    return config


def _train_steps(config, num_steps: int = 20):
    """(params, mean train loss) after `num_steps` steps of the engine's own compiled step."""
    plan = loop.setup(config)
    state, train_step = init_state(plan), steps.make_train_step(plan)
    feed, tally = steps.open_batch_feed(plan), steps.zero_tally(plan)
    for step in range(num_steps):
        state, tally = train_step(state, feed.next_chunk(step), tally)
    feed.close()
    host = steps.tally_to_host(tally)
    return plan, jax.device_get(state.params), host["sums"]["loss"] / host["counted"]


@functools.cache
def _one_device(name: str, num_steps: int = 20, **fields):
    return _train_steps(_experiment(name, mesh__num_devices=1, **fields), num_steps)[1:]


LAYOUTS = {
    "data8": {"mesh__data": 8},
    "data4_fsdp2": {"mesh__data": 4, "mesh__fsdp": 2},
    "data2_tensor4": {"mesh__data": 2, "mesh__tensor": 4},
    "fsdp8": {"mesh__data": 1, "mesh__fsdp": 8},
    "shard_map": {"mesh__data": 8, "mesh__mode": "shard_map"},
}


# The MLP with dropout, the CNN with batch norm and dropout: both modes draw the same masks
# and (synchronised) batch statistics as one device does.
CASES = [
    *[(name, layout) for name in ("digits_mlp", "digits_cnn") for layout in LAYOUTS],
    # ResNet: batch norm in every block, and zero-padded (option A) shortcuts. ViT: attention
    # heads and MLP units over tensor; dropout inside the blocks per device. ResNet's and ViT's
    # cases (about 145 s together) run in `make test-all`; the CNN (batch norm, dropout) covers
    # every layout in `make test`, which has to fit CI's 25 minutes.
    pytest.param("digits_resnet", "shard_map", marks=pytest.mark.slow),
    pytest.param("digits_vit", "shard_map", marks=pytest.mark.slow),
    pytest.param("digits_resnet", "data2_tensor4", marks=pytest.mark.slow),
    pytest.param("digits_vit", "data2_tensor4", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "layout"), CASES)
def test_every_layout_matches_one_device(name, layout):
    fields = {"data__batch_size": 64}
    if name == "digits_mlp":
        fields["model__hidden_sizes"] = (128, 64)  # Large enough for fsdp to split kernels.
    # Batch norm and Adam amplify sums reordered over devices: ResNet's tensor layout equals one
    # device exactly after 1 step, but after 20 near-zero conv kernel entries differed by 1e-3
    # (lax convolution) to 3e-2 (chunked patch convolution) relative; after 10, within the bar.
    num_steps = 10 if (name, layout) == ("digits_resnet", "data2_tensor4") else 20
    expected_params, expected_loss = _one_device(name, num_steps, **fields)
    plan, params, loss = _train_steps(_experiment(name, **fields, **LAYOUTS[layout]), num_steps)
    assert plan.mesh.size == 8
    specs = {str(leaf.sharding.spec) for leaf in jax.tree.leaves(plan.abstract_state.params)}
    if layout == "data2_tensor4":
        assert any("tensor" in spec for spec in specs)
    if layout in ("fsdp8", "data4_fsdp2") and name == "digits_mlp":
        assert any("fsdp" in spec for spec in specs)
    # Sums over devices add in another order: equal to rounding, not bit for bit.
    chex.assert_trees_all_close(
        _without_key_biases(params), _without_key_biases(expected_params), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)


def _without_key_biases(params):
    """Attention key biases dropped: softmax ignores a shift shared by all keys, so their
    gradient is zero in exact arithmetic, and Adam turns its rounding noise into steps as large
    as the learning rate, differently for every summation order."""
    flat = flax.traverse_util.flatten_dict(params, sep="/")
    keys = [k for k in flat if "MultiHeadAttention" in k and "DenseGeneral_1/bias" in k]
    return {k: v for k, v in flat.items() if k not in keys}


@pytest.mark.parametrize("mode", ["jit", "shard_map"])
def test_accumulating_micro_batches_equals_one_step_on_the_whole_batch(mode):
    # No dropout: each micro-batch draws its own masks. No batch norm: its statistics are per
    # micro-batch. Then k micro-batches of 16 are one batch of 64.
    fields = {"data__batch_size": 64, "model__dropout_rate": 0.0, "mesh__mode": mode}
    expected_params, expected_loss = _train_steps(_experiment("digits_mlp", **fields))[1:]
    _, params, loss = _train_steps(_experiment("digits_mlp", train__grad_accum_steps=4, **fields))
    chex.assert_trees_all_close(params, expected_params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)


def _temp_bytes(accum: int) -> int:
    config = _experiment(
        "digits_mlp", data__batch_size=4096, model__hidden_sizes=(512, 512), mesh__num_devices=1
    )
    config.train.grad_accum_steps = accum
    plan = loop.setup(config)
    feed = steps.open_batch_feed(plan)
    chunk = feed.next_chunk(0)
    feed.close()
    compiled = (
        steps.make_train_step(plan)
        .lower(plan.abstract_state, chunk, steps.zero_tally(plan))
        .compile()
    )
    return compiled.memory_analysis().temp_size_in_bytes


def test_accumulation_lowers_the_compiled_steps_scratch_memory():
    one, eight = _temp_bytes(1), _temp_bytes(8)
    assert eight < one / 2, (one, eight)


def test_float16_loss_scaling_skips_overflowing_steps_and_trains_on(tmp_path):
    # 2**24 overflows float16 gradients: the first steps are skipped and the scale halves
    # until updates go through; the non-finite guard never sees any of it.
    config = _experiment(
        "digits_mlp", model__dtype="float16", train__loss_scale_init=2.0**24, train__num_steps=40
    )
    workdir.start_new(tmp_path / "run", config)
    summary = loop.train(loop.setup(config), tmp_path / "run")
    train = [r for r in read_records(tmp_path / "run") if r["split"] == "train"]
    assert train[0]["overflow_skipped"] > 0 and train[0]["loss_scale"] < 2.0**24
    assert train[-1]["overflow_skipped"] == 0
    assert train[-1]["loss"] < train[0]["loss"]
    assert summary["nonfinite"]["skipped_updates"] == 0 and summary["status"] == "completed"
    assert np.isfinite(summary["final_metrics"]["test/loss"])


BAD_INPUT = {
    "mesh_product": (
        ["--config.mesh.data=3"],
        "data=3 x fsdp=1 x tensor=1 asks for 3 devices, but the mesh has 8",
    ),
    "two_rest_axes": (
        ["--config.mesh.fsdp=-1"],
        "config.mesh.fsdp: only one axis may be -1; got -1 for data, fsdp",
    ),
    "batch_axes": (
        ["--config.mesh.data=2", "--config.mesh.fsdp=4", "--config.data.batch_size=36"],
        "config.data.batch_size=36 is not divisible by the 8 devices",
    ),
    "tensor_divides": (
        ["--config.mesh.data=1", "--config.mesh.tensor=8", "--config.model.hidden_sizes=(12,)"],
        "config.mesh.tensor=8 does not divide dimension",
    ),
    "accum_divides": (
        ["--config.train.grad_accum_steps=3"],
        "config.train.grad_accum_steps=3 does not divide the per-device batch of 8",
    ),
    "shard_map_fsdp": (
        ["--config.mesh.mode=shard_map", "--config.mesh.data=4", "--config.mesh.fsdp=2"],
        "config.mesh.mode=shard_map splits the batch only",
    ),
    "process_id_range": (
        ["--coordinator_address=127.0.0.1:1234", "--num_processes=2", "--process_id=2"],
        "--process_id=2 must be in 0..1",
    ),
    "process_id_missing": (
        ["--coordinator_address=127.0.0.1:1234", "--num_processes=2"],
        "--num_processes=2 needs --process_id too",
    ),
    "coordinator_missing": (
        ["--num_processes=2", "--process_id=0"],
        "--num_processes=2 needs --coordinator_address=HOST:PORT too",
    ),
    "coordinator_form": (
        ["--coordinator_address=localhost", "--num_processes=2", "--process_id=0"],
        "--coordinator_address=localhost: write it as HOST:PORT",
    ),
    "num_processes_only_flag": (
        ["--process_id=0"],
        "--num_processes=None: give the number of processes",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_scale_out_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, case):
    overrides, words = BAD_INPUT[case]
    target = tmp_path / "run"
    argv = ["train", "--config", "digits_mlp:quick", "--workdir", str(target), *overrides]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not target.exists()

"""Magnitude pruning: masks by magnitude (global and per layer), the sparsity schedule, masks
held through optimizer steps and across a resume, the report in summary.json, bad input."""

import itertools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxdl import pruning
from jaxdl.cli import main
from tests.run_helpers import assert_stopped_run_resumes_identically
from tests.test_cli_errors import QUICK, run_cli
from tests.test_cli_errors import train_quick as train


def prune_config(**fields) -> ml_collections.ConfigDict:
    base = {"sparsity": 0.5, "scope": "global", "begin": 0.0, "end": 0.5, "every": 2}
    return ml_collections.ConfigDict({**base, **fields})


def test_global_masks_rank_all_kernels_together_and_layer_masks_each():
    params = {
        "small": {"kernel": jnp.arange(1.0, 9.0).reshape(2, 4), "bias": jnp.zeros(4)},
        "large": {"kernel": 10 * jnp.arange(1.0, 9.0).reshape(4, 2)},
    }
    masks = pruning.magnitude_masks(params, jnp.float32(0.5), "global")
    # The 8 smallest of 16 kernel weights are all of `small`; biases are never pruned.
    assert not masks["small"]["kernel"].any() and masks["large"]["kernel"].all()
    assert masks["small"]["bias"].all()
    masks = pruning.magnitude_masks(params, jnp.float32(0.5), "layer")
    for name in ("small", "large"):
        kept = np.asarray(masks[name]["kernel"]).ravel()
        np.testing.assert_array_equal(kept, np.arange(8) >= 4)


def test_polynomial_schedule_ramps_from_begin_to_end():
    schedule = pruning.sparsity_schedule(prune_config(sparsity=0.8, begin=0.1, end=0.5), 100)
    assert (schedule.begin, schedule.end) == (10, 50)
    values = [float(schedule(step)) for step in (0, 10, 30, 50, 90)]
    np.testing.assert_allclose(values, [0, 0, 0.8 * (1 - 0.5**3), 0.8, 0.8], rtol=1e-6)


def test_masked_weights_stay_zero_through_optimizer_steps():
    params = {"dense": {"kernel": jax.random.normal(jax.random.key(0), (16, 8))}}
    tx = pruning.magnitude_pruning(
        optax.adamw(1e-2, weight_decay=0.1), prune_config(sparsity=0.75, end=0.5), 20
    )
    state = tx.init(params)
    zero_sets = []
    for step in range(20):
        grads = jax.tree.map(
            lambda p, step=step: jax.random.normal(jax.random.key(step + 1), p.shape), params
        )
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        kernel = np.asarray(params["dense"]["kernel"])
        mask = np.asarray(state.masks["dense"]["kernel"])
        np.testing.assert_array_equal(kernel[~mask], 0.0)  # Exactly zero where masked.
        zero_sets.append(set(np.flatnonzero(kernel == 0)))
    # The schedule reaches 75% at step 10 and holds it; a pruned weight never comes back.
    assert len(zero_sets[-1]) == 96
    assert all(a <= b for a, b in itertools.pairwise(zero_sets))


def test_pruned_run_resumes_bit_exactly_and_reports_its_sparsity(tmp_path, monkeypatch, capsys):
    # 40 quick steps: the ramp runs over steps 4..24, masks every 5 steps.
    options = (
        "--config.prune.sparsity=0.8",
        "--config.prune.every=5",
        "--config.train.checkpoint_every=10",
    )
    whole = assert_stopped_run_resumes_identically(
        lambda workdir: train(workdir, *options),
        tmp_path,
        monkeypatch,
        capsys,
        at_step=15,
        keys=("sparsity",),
    )
    sparsity = whole["sparsity"]
    assert sparsity["target"] == 0.8
    assert sparsity["overall"] == pytest.approx(0.8, abs=0.01)
    assert set(sparsity["layers"]) == {"Dense_0/kernel", "Dense_1/kernel"}
    # The best checkpoint is a fully pruned one (not an early, denser evaluation).
    assert whole["final_metrics_step"] >= 24


def test_bad_prune_fields_exit_2(capsys, tmp_path):
    def fails(*overrides: str, match: str) -> None:
        code, _, err = run_cli(
            capsys, "train", "--config", QUICK, "--workdir", str(tmp_path / "w"), *overrides
        )
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and match in err, err

    fails("--config.prune.sparsity=1.0", match="config.prune.sparsity=1.0")
    fails("--config.prune.sparsity=0.5", "--config.prune.scope=row", match="config.prune.scope")
    fails("--config.prune.sparsity=0.5", "--config.prune.end=1.5", match="config.prune.end")
    code, _, err = run_cli(
        capsys,
        "train",
        "--config",
        "digits_gan:quick",
        "--workdir",
        str(tmp_path / "g"),
        "--config.prune.sparsity=0.5",
    )
    assert code == 2 and "compression is for classifiers" in err, err


def test_unit_masks_prune_whole_neurons_with_their_bias():
    from jaxdl.models.units import dense_chain

    # Dense_0 has 4 units whose incoming weights have norms 1, 4, 2, 3; the head is never pruned.
    params = {
        "Dense_0": {"kernel": jnp.array([[1.0, 4.0, 2.0, 3.0]]), "bias": jnp.ones(4)},
        "Dense_1": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)},
    }
    masks = pruning.unit_masks(params, dense_chain([4], batch_norm=False), jnp.float32(0.5))
    np.testing.assert_array_equal(masks["Dense_0"]["kernel"], [[False, True, False, True]])
    np.testing.assert_array_equal(masks["Dense_0"]["bias"], [False, True, False, True])
    assert masks["Dense_1"]["kernel"].all() and masks["Dense_1"]["bias"].all()


@pytest.mark.parametrize("config", ["mlp", "cnn"])
def test_shrinking_a_units_pruned_run_keeps_its_outputs(config, tmp_path, capsys):
    from jaxdl.compression import inference
    from tests.run_helpers import QUICK_CNN

    experiment = {"mlp": QUICK, "cnn": QUICK_CNN}[config]  # The CNN has batch norm.
    run, small = tmp_path / "run", tmp_path / "small"
    overrides = ("--config.prune.sparsity=0.5", "--config.prune.structure=units")
    argv = ["train", "--config", experiment, "--workdir", str(run), *overrides]
    assert main(argv) == 0
    code, _, err = run_cli(
        capsys, "shrink", "--workdir", str(run), "--out", str(small), "--latency_repeats", "2"
    )
    assert code == 0, err
    summary = json.loads((small / "summary.json").read_text())
    assert all(kept == width // 2 for kept, width in summary["units"].values())
    source, shrunk = inference.load(run), inference.load(small)
    assert summary["compression"][1]["param_bytes"] < 0.6 * summary["compression"][0]["param_bytes"]
    batch = inference.test_inputs(source.plan, 16)
    np.testing.assert_allclose(shrunk.logits(batch), source.logits(batch), rtol=1e-5, atol=1e-5)
    code, _, err = run_cli(capsys, "shrink", "--workdir", str(run), "--out", str(small))
    assert code == 2 and "already exists" in err


def test_units_need_a_model_that_declares_them(capsys, tmp_path):
    code, _, err = run_cli(
        capsys,
        "train",
        "--config",
        "digits_vit:quick",
        "--workdir",
        str(tmp_path / "v"),
        "--config.prune.sparsity=0.5",
        "--config.prune.structure=units",
    )
    assert code == 2 and "does not declare its units" in err, err

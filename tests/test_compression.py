"""Post-training quantization (`jaxdl quantize`) and export (`jaxdl export`).

The classifier runs are the session's shared quick runs (a CNN with batch norm, an MLP): these
tests only read them and write their own new directories.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import qwix

from jaxdl import export
from jaxdl.cli import main
from jaxdl.compression import inference, packing, quantize_run
from jaxdl.models import quantized
from tests.test_cli_errors import run_cli

# Latency is measured, not judged, here: two timed passes are enough to see it reported.
FEW_REPEATS = ("--latency_repeats", "2")


def test_per_channel_int8_round_trip_error_is_at_most_half_a_step():
    weights = jax.random.normal(jax.random.key(0), (3, 3, 16, 8)) * jnp.arange(1, 9)
    q = qwix.quantize(weights, jnp.int8, channelwise_axes=(3,))
    step = np.asarray(q.scale)  # One scale per output channel.
    assert step.shape == (1, 1, 1, 8)
    # Qwix maps absmax to 127.5 (the middle of int8's asymmetric range, clipped to 127).
    np.testing.assert_allclose(step.reshape(-1), np.abs(weights).max((0, 1, 2)) / 127.5, rtol=1e-6)
    error = np.abs(np.asarray(qwix.dequantize(q)) - np.asarray(weights))
    assert np.all(error <= step / 2 + 1e-6)
    assert q.qvalue.dtype == jnp.int8


@pytest.mark.parametrize("dtype", [jnp.int4, jnp.int8, jnp.float8_e4m3fn, jnp.float32])
def test_packed_bytes_round_trip_and_int4_takes_half_a_byte(dtype):
    values = np.arange(-8, 7).astype(dtype).reshape(3, 5)  # Odd count: a half-filled last byte.
    raw = packing.to_bytes(values)
    assert raw.dtype == np.uint8
    assert raw.size == (8 if dtype == jnp.int4 else 15 * np.dtype(dtype).itemsize)
    back = packing.from_bytes(raw, values)
    assert back.dtype == values.dtype
    np.testing.assert_array_equal(back.astype(np.float32), values.astype(np.float32))


def test_unknown_scheme_or_unsupported_mode_is_refused():
    with pytest.raises(Exception, match="--scheme=int3: unknown scheme"):
        quantized.QuantSpec("int3", "static")
    with pytest.raises(Exception, match="--mode=fake: unknown mode"):
        quantized.QuantSpec("int8", "fake")
    with pytest.raises(Exception, match="--mode=weight"):
        quantized.QuantSpec("int4", "static")


def test_qat_gradients_pass_straight_through_the_rounding():
    from jaxdl.models.mlp import MLP

    # A batch of 16 rows into a 16x16 kernel: the shapes alone cannot tell input from weight.
    model = MLP(num_classes=4, hidden_sizes=(16,), dropout_rate=0.0)
    x = jax.random.normal(jax.random.key(1), (16, 16))
    params = model.init(jax.random.key(0), x, train=False)["params"]
    params = jax.tree.map(jnp.asarray, flax_unbox(params))
    for mode in ("dynamic", "weight"):
        qat = quantized.qat_model(
            model, quantized.QuantSpec("int4" if mode == "weight" else "int8", mode)
        )

        def loss(p, net):
            return jnp.sum(net.apply({"params": p}, x, train=False) ** 2)

        float_grads = jax.jit(jax.grad(loss, argnums=0), static_argnums=1)(params, model)
        qat_grads = jax.jit(jax.grad(loss, argnums=0), static_argnums=1)(params, qat)
        for f, q in zip(jax.tree.leaves(float_grads), jax.tree.leaves(qat_grads), strict=True):
            f, q = np.ravel(f), np.ravel(q)
            assert np.all(np.isfinite(q)) and np.any(q != 0)
            assert not np.array_equal(f, q)  # The forward pass did round.
            cosine = f @ q / (np.linalg.norm(f) * np.linalg.norm(q))
            assert cosine > 0.95, (mode, cosine)


def flax_unbox(tree):
    from flax import linen as nn

    return nn.unbox(tree)


def test_calibration_is_deterministic_and_fixes_the_activation_scales(reference_run):
    source = inference.load(reference_run)
    spec = quantized.QuantSpec("int8", "static")
    model = source.plan.task.model
    inputs = quantize_run.calibration_inputs(source.plan, 2)
    first = quantized.calibrate(model, spec, source.variables, inputs)
    second = quantized.calibrate(model, spec, source.variables, inputs)
    chex_equal = jax.tree.map(lambda a, b: np.array_equal(a, b), first, second)
    assert all(jax.tree.leaves(chex_equal))
    counts = [int(np.ravel(leaf["count"])[0]) for leaf in jax.tree.leaves(first, is_leaf=_is_stat)]
    assert counts and set(counts) == {2}  # Every quantized op saw both batches.


def _is_stat(leaf) -> bool:
    return isinstance(leaf, dict) and "count" in leaf


@pytest.fixture(scope="module")
def int8_run(reference_run, tmp_path_factory):
    """The quick CNN quantized to int8 with static ranges, through the CLI."""
    out = tmp_path_factory.mktemp("quantized") / "cnn_int8"
    argv = ["quantize", "--workdir", str(reference_run), "--out", str(out)]
    assert main([*argv, "--calibration_batches", "2", *FEW_REPEATS]) == 0
    return out


def test_quantize_writes_a_run_with_the_report_and_keeps_accuracy(int8_run, reference_run):
    summary = json.loads((int8_run / "summary.json").read_text())
    assert summary["quantization"] == {"scheme": "int8", "mode": "static", "calibration_batches": 2}
    original, variant = summary["compression"]
    assert (original["name"], variant["name"]) == ("float32", "int8 static")
    # Convolutions and dense kernels in int8 with float32 scales; norms and biases stay float32.
    assert variant["param_bytes"] < 0.35 * original["param_bytes"]
    assert abs(variant["accuracy"] - original["accuracy"]) <= 0.03
    assert summary["final_metrics"]["test/accuracy"] == variant["accuracy"]
    for row in (original, variant):
        assert set(row["latency_ms"]) == {"batch_1", "batch_256"}
        assert all(ms > 0 for ms in row["latency_ms"].values())
    assert {p.name for p in int8_run.iterdir()} == {
        "config.json",
        "quantization.json",
        "params.npz",
        "summary.json",
        "compression.png",
    }
    reloaded = inference.load(int8_run)
    assert reloaded.evaluate("test")["accuracy"] == pytest.approx(variant["accuracy"])
    # The stored arrays really are int8 (plus float scales).
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(reloaded.params)}
    assert jnp.dtype(jnp.int8) in dtypes
    # Static ranges: an example's logits do not depend on the batch it is predicted in.
    batch = inference.test_inputs(reloaded.plan, 4)
    one = reloaded.logits({key: value[:1] for key, value in batch.items()})
    np.testing.assert_allclose(one, reloaded.logits(batch)[:1], rtol=1e-5, atol=1e-5)


def test_weight_only_int4_quantizes_every_kernel_and_halves_int8(finished_run, tmp_path):
    sizes = {}
    for scheme in ("int8", "int4"):
        out = tmp_path / scheme
        argv = ["quantize", "--workdir", str(finished_run), "--out", str(out)]
        assert main([*argv, "--scheme", scheme, "--mode", "weight", *FEW_REPEATS]) == 0
        summary = json.loads((out / "summary.json").read_text())
        sizes[scheme] = summary["compression"][1]["param_bytes"]
        model = inference.load(out)
        kernels = [leaf for leaf in jax.tree.leaves(model.params, is_leaf=_is_qarray)]
        assert all(isinstance(k, qwix.QArray) for k in kernels if np.ndim(k) >= 2)
    assert sizes["int4"] < 0.6 * sizes["int8"]


def _is_qarray(leaf) -> bool:
    return isinstance(leaf, qwix.QArray)


def test_export_round_trip_gives_the_in_memory_logits_at_any_batch_size(
    reference_run, int8_run, tmp_path
):
    for run, tolerance in ((reference_run, 1e-6), (int8_run, 1e-6)):
        path = tmp_path / f"{run.name}.bin"
        assert main(["export", "--workdir", str(run), "--out", str(path)]) == 0
        model = inference.load(run)
        loaded = export.load(path)
        for batch_size in (1, 7):
            batch = inference.test_inputs(model.plan, batch_size)
            expected = np.asarray(model.logits(batch))
            got = np.asarray(loaded(batch["input"]))
            assert got.shape == (batch_size, model.plan.dataset.num_classes)
            np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)


def test_compare_reports_each_run_and_plots_accuracy_against_size(
    reference_run, int8_run, tmp_path, capsys
):
    out = tmp_path / "report.png"
    code, printed, err = run_cli(
        capsys,
        "compare",
        "--measure",
        str(reference_run),
        str(int8_run),
        "--out",
        str(out),
        *FEW_REPEATS,
    )
    assert code == 0, err
    lines = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(lines) == 3  # Header and two runs.
    assert "(float32)" in lines[1] and "(int8 static)" in lines[2]
    assert out.read_bytes().startswith(b"\x89PNG")
    code, _, err = run_cli(capsys, "compare", "--measure", str(reference_run), "--out", str(out))
    assert code == 2 and "already exists" in err


def test_bad_input_exits_2_with_one_clear_line(capsys, tmp_path, reference_run, finished_run):
    def fails(*argv: str, match: str) -> None:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1, err
        assert match in err, err

    out = str(tmp_path / "out")
    fails("quantize", "--workdir", str(tmp_path / "nope"), "--out", out, match="holds no jaxdl run")
    fails("export", "--workdir", str(tmp_path / "nope"), "--out", out, match="holds no jaxdl run")
    fails("shrink", "--workdir", str(tmp_path / "nope"), "--out", out, match="holds no jaxdl run")
    fails(
        "quantize",
        "--workdir",
        str(reference_run),
        "--out",
        out,
        "--scheme",
        "int3",
        match="unknown scheme",
    )
    # A run of another task: a generative config saved as a run's config.json.
    gan = tmp_path / "gan"
    gan.mkdir()
    assert main(["train", "--config", "digits_gan", "--show_config"]) == 0
    (gan / "config.json").write_text(capsys.readouterr().out)
    fails("quantize", "--workdir", str(gan), "--out", out, match="takes classifiers")
    fails("export", "--workdir", str(gan), "--out", out, match="takes classifiers")
    fails("compare", "--measure", str(reference_run), str(gan), match="takes classifiers")
    fails("shrink", "--workdir", str(gan), "--out", out, match="takes classifiers")
    # Nothing already saved is overwritten.
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    fails(
        "quantize", "--workdir", str(finished_run), "--out", str(existing), match="already exists"
    )
    taken = tmp_path / "model.bin"
    taken.write_text("mine")
    fails("export", "--workdir", str(finished_run), "--out", str(taken), match="already exists")
    assert (existing / "keep.txt").read_text() == "mine" and taken.read_text() == "mine"
    assert not Path(out).exists()

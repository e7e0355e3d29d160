"""The benchmark suite (`python -m benchmarks`) in quick mode, so that it cannot rot."""

import importlib.util
import json

import pytest

from benchmarks import __main__ as bench
from benchmarks.reference import REFERENCES


def test_quick_suite_writes_results(tmp_path, monkeypatch):
    # The workers run on one CPU device, as the suite does outside the tests' 8 virtual ones.
    monkeypatch.setenv("XLA_FLAGS", "")
    # PyTorch is a benchmark-only extra: its eager column is checked where it is installed.
    with_torch = importlib.util.find_spec("torch") is not None
    frameworks = "jaxdl,torch_eager" if with_torch else "jaxdl"
    (tmp_path / "RESULTS.md").write_text("# Benchmark results\n\nAn earlier section stays.\n")
    assert bench.main(["--quick", "--frameworks", frameworks, "--out", str(tmp_path)]) == 0

    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["matmul_peak_flops"]["median"] > 1e9
    (record,) = payload["models"]
    assert record["model"] == "mlp"
    for field in ("jaxdl_steps_per_s", "jaxdl_pipeline_steps_per_s", "compile_s", "peak_mem_mb"):
        assert record[field] > 0, field
    assert record["jaxdl_samples_per_s"] == pytest.approx(256 * record["jaxdl_steps_per_s"])
    # The analytic count (matrix products only) is within a few percent of XLA's, which also
    # counts the elementwise work of the step.
    assert record["xla_flops_per_step"] == pytest.approx(record["train_flops_per_step"], rel=0.1)
    assert 0 < record["flops_fraction_of_peak"] < 5
    if with_torch:
        assert record["parameters"]["jaxdl"] == record["parameters"]["torch_eager"]
        ratio = record["jaxdl_steps_per_s"] / record["torch_eager_steps_per_s"]
        assert record["ratio_vs_eager"] == pytest.approx(ratio)
    else:
        assert record["torch_eager_steps_per_s"] is None and record["ratio_vs_eager"] is None
    assert record["torch_compile_steps_per_s"] is None  # Left out by --frameworks.

    text = (tmp_path / "RESULTS.md").read_text()
    assert "An earlier section stays." in text and text.count("<!-- suite:begin -->") == 1
    assert "| mlp |" in text
    assert (tmp_path / "suite.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "field"),
    [(["--models", "mlp,vgg"], "--models"), (["--frameworks", "torch_eager"], "--frameworks")],
)
def test_bad_arguments_exit_2_with_one_line(argv, field, capsys):
    assert bench.main(["--quick", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err


def test_reference_flops_match_hand_counts():
    # MLP 784-512-512-10: 2 x multiply-adds forward; training is 3x that less the first
    # layer's input gradient.
    forward = 2 * (784 * 512 + 512 * 512 + 512 * 10)
    assert REFERENCES["mlp"].train_flops_per_step == 256 * (3 * forward - 2 * 784 * 512)
    # ResNet-18 (CIFAR): about 0.56 G multiply-adds forward per image (the usual figure).
    assert REFERENCES["resnet18"].forward_flops == pytest.approx(1.11e9, rel=0.02)


def test_gpu_harness_quick_run_records_the_bf16_suite(tmp_path):
    """benchmarks.gpu on any backend (--quick: tiny shapes, the MLP only), so it cannot rot."""
    from benchmarks import gpu

    assert gpu.main(["--quick", "--parts", "peak,suite", "--out", str(tmp_path)]) == 0
    records = [
        json.loads(line) for line in (tmp_path / "gpu_results.jsonl").read_text().splitlines()
    ]
    assert records[0]["backend"] == "cpu"
    assert records[1]["bf16_matmul_tflops"] > 0
    (mlp,) = [r for r in records if r.get("model") == "mlp"]
    assert mlp["steps_per_s"] > 0 and mlp["parameters"] == 784 * 512 + 512 * 512 + 5130 + 1024
    assert mlp["final_loss"] == mlp["final_loss"]  # Not NaN: bfloat16 compute trains.


def test_gpu_harness_refuses_a_file_as_out(tmp_path, capsys):
    from benchmarks import gpu

    target = tmp_path / "results.txt"
    target.write_text("kept")
    assert gpu.main(["--out", str(target)]) == 2
    assert "--out" in capsys.readouterr().err and target.read_text() == "kept"
    assert gpu.main(["--parts", "peak,gtp2"]) == 2
    assert "gtp2" in capsys.readouterr().err

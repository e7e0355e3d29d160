"""The CIFAR-10 and ImageNet experiments, run through tfds.testing.mock_data (no files, no network).

The quick variants train end to end; the full configs are resolved and checked by `setup`
(state shapes, augmentations, mesh) without training.
"""

from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdl.engine import loop, workdir
from tests.run_helpers import experiment_config

TFDS_EXPERIMENTS = (
    "cifar10_resnet20",
    "cifar10_resnet18",
    "cifar10_vit_s",
    "imagenet_resnet50",
    "imagenet_vit_b16",
)


def _config(name: str, variant: str, data_dir: Path):
    return experiment_config(name, variant, data_dir)


# Compiling a ResNet or ViT step takes tens of seconds on CPU: `make test-all` trains each
# config's quick variant; `make test` checks them all with `setup` (below), and trains ResNets and
# ViTs on digits elsewhere.
QUICK_RUNS = [pytest.param(name, marks=pytest.mark.slow) for name in TFDS_EXPERIMENTS]


@pytest.mark.parametrize("name", QUICK_RUNS)
def test_quick_variant_trains_on_mock_data(tmp_path, name):
    config = _config(name, "quick", tmp_path / "tfds")
    config.mesh.num_devices = 1  # One device compiles fastest; layouts are tested elsewhere.
    config.train.num_steps = 4
    config.schedule.warmup_steps = 1
    config.train.log_every = 2
    config.train.eval_every = 2
    config.train.checkpoint_every = 4
    with tfds.testing.mock_data(num_examples=40):
        plan = loop.setup(config)
        workdir.start_new(tmp_path / "run", config)
        summary = loop.train(plan, tmp_path / "run")
    side = 32
    assert plan.dataset.input_shape == (side, side, 3)
    assert summary["steps"] == 4
    assert 0.0 <= summary["final_metrics"]["test/accuracy"] <= 1.0
    assert np.isfinite(summary["final_metrics"]["test/loss"])


@pytest.mark.parametrize("name", TFDS_EXPERIMENTS)
def test_full_config_passes_setup(tmp_path, name):
    config = _config(name, "", tmp_path / "tfds")
    with tfds.testing.mock_data(num_examples=20):
        if name.startswith("imagenet"):
            config.data.validation_fraction = 0.1  # Of 20 mock images; the real split is 10,000.
        plan = loop.setup(config)
    expected = {"cifar10": (32, 32, 3), "imagenet2012": (224, 224, 3)}[config.data.name]
    assert plan.dataset.input_shape == expected
    assert plan.dataset.num_classes == {"cifar10": 10, "imagenet2012": 1000}[config.data.name]
    assert len(plan.augmentations) == len(config.data.augment)


@pytest.mark.slow
def test_vision_throughput_benchmark_quick_mode(capsys):
    from benchmarks import vision_throughput

    assert (
        vision_throughput.main(["--quick", "--batch", "8", "--experiments", "imagenet_vit_b16"])
        == 0
    )
    row = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("| imagenet_vit")
    )
    on_device, with_pipeline = (float(cell) for cell in row.strip("|").split("|")[4:])
    assert on_device > 0 and with_pipeline > 0

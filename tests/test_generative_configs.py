"""The generative experiments for TFDS data (MNIST, CIFAR-10, CelebA), checked by `setup` through
tfds.testing.mock_data (no files, no network), with the classifier their sample quality uses."""

from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from jaxdl.cli import parse_config
from jaxdl.data import load_dataset
from jaxdl.engine import loop
from jaxdl.errors import UserInputError
from tests.run_helpers import experiment_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3), "celeb_a": (64, 64, 3)}
NAMES = [
    f"{data}_{family}"
    for data in ("mnist", "cifar10", "celeb_a")
    for family in ("vae", "diffusion", "gan")
    if (EXPERIMENTS / f"{data}_{family}.py").exists()
]


def _config(name: str, variant: str, data_dir: Path):
    return experiment_config(name, variant, data_dir)


def test_every_family_has_its_tfds_configs():
    assert len(NAMES) == 9, NAMES


# Tracing a U-Net takes 10 s or more: the diffusion configs are checked in make test-all.
SETUP_CASES = [
    pytest.param(name, marks=pytest.mark.slow) if name.endswith("diffusion") else name
    for name in NAMES
]


@pytest.mark.parametrize("name", SETUP_CASES)
def test_full_config_passes_setup_and_names_a_classifier_of_the_same_data(tmp_path, name):
    config = _config(name, "", tmp_path / "tfds")
    with tfds.testing.mock_data(num_examples=12):
        plan = loop.setup(config)
    assert plan.dataset.input_shape == SHAPES[config.data.name]
    assert plan.task.generates_images and "fd" in plan.eval_metric_names
    quality = config.sample_quality
    classifier = parse_config(quality.classifier_config, list(quality.classifier_overrides))
    assert classifier.task.name == "classification"
    assert classifier.data.name == config.data.name
    assert classifier.data.get("image_size", 0) in (0, config.data.get("image_size", 0))


def test_celeb_a_is_labelled_by_an_attribute(tmp_path):
    from jaxdl.data.pipeline import eval_batches

    config = _config("celeb_a_vae", "quick", tmp_path / "tfds").data
    config.attribute = "Smiling"
    with tfds.testing.mock_data(num_examples=12):
        spec = load_dataset(config)
        batch = next(eval_batches(spec, "test", batch_size=4))
        assert batch["input"].shape == (4, 16, 16, 3) and spec.num_classes == 2
        assert batch["input"].min() >= 0.0 and batch["input"].max() <= 1.0
        config.attribute = "Smiling_a_lot"
        with pytest.raises(UserInputError, match=r"data\.attribute.*Did you mean: Smiling"):
            load_dataset(config)

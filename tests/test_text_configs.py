"""The TFDS text experiments, run through tfds.testing.mock_data (no files, no network).

The quick variants train end to end on mock text; the full configs are resolved and checked by
`setup` (state shapes, features) without training.
"""

from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdl.engine import loop, workdir
from tests.run_helpers import experiment_config

TEXT_EXPERIMENTS = {
    "tiny_shakespeare_gpt": "bits_per_char",
    "lm1b_gpt": "bits_per_char",
    "imdb_bilstm": "accuracy",
    "wmt14_t5": "token_accuracy",
}


def _config(name: str, variant: str, data_dir: Path):
    return experiment_config(name, variant, data_dir)


# The GPT configs train the model that tests/test_lm_runs.py trains through the CLI, and wmt14_t5
# the encoder-decoder of tests/test_seq2seq.py: their quick runs are in `make test-all` only.
QUICK_RUNS = [
    pytest.param(name, marks=pytest.mark.slow)
    if name in ("tiny_shakespeare_gpt", "lm1b_gpt", "wmt14_t5")
    else name
    for name in TEXT_EXPERIMENTS
]


@pytest.mark.parametrize("name", QUICK_RUNS)
def test_quick_variant_trains_on_mock_data(tmp_path, name):
    config = _config(name, "quick", tmp_path / "tfds")
    config.mesh.num_devices = 1
    config.data.batch_size = config.data.eval_batch_size = 8
    config.train.num_steps = 4
    config.schedule.warmup_steps = 1
    config.train.log_every = 2
    config.train.eval_every = 2
    config.train.checkpoint_every = 4
    # tiny_shakespeare has one text per split: mock examples are joined into windows.
    with tfds.testing.mock_data(num_examples=200):
        plan = loop.setup(config)
        workdir.start_new(tmp_path / "run", config)
        summary = loop.train(plan, tmp_path / "run")
    assert plan.dataset.vocab_size == 256
    assert summary["steps"] == 4
    metric = summary["final_metrics"][f"test/{TEXT_EXPERIMENTS[name]}"]
    assert np.isfinite(metric) and metric >= 0.0
    if TEXT_EXPERIMENTS[name] == "bits_per_char":
        assert summary["bits_per_char"] == metric


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.slow) if name in ("lm1b_gpt", "wmt14_t5") else name
        for name in TEXT_EXPERIMENTS
    ],
)
def test_full_config_passes_setup(tmp_path, name):
    config = _config(name, "", tmp_path / "tfds")
    with tfds.testing.mock_data(num_examples=200):
        plan = loop.setup(config)
    assert plan.dataset.name == config.data.name
    assert plan.dataset.vocab_size == 256


@pytest.mark.slow
def test_lm_throughput_benchmark_quick_mode(capsys):
    from benchmarks import lm_throughput

    assert lm_throughput.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| xla | float32 | 8 |" in out and "Tokens/s" in out

"""The BERT-style encoder experiments (brackets_encoder, stdlib_bert_mlm) on the small sequence
builders: their quick variants train in-process for 4 steps (the full configs' results are in
the experiments' docstrings)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from jaxdl.engine import loop, workdir

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
# Experiment -> (dataset, task): both report accuracy (masked-token accuracy for masked_lm).
ENCODER_EXPERIMENTS = {
    "brackets_encoder": ("algorithmic/brackets", "classification"),
    "stdlib_bert_mlm": ("stdlib_chars", "masked_lm"),
}


def _config(name: str, variant: str, data_dir: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    config.data.data_dir = data_dir
    config.train.progress_bar = False
    return config


# Both objectives are trained in the fast suite by test_masked_lm.py and test_pretrained.py.
QUICK_RUNS = [pytest.param(name, marks=pytest.mark.slow) for name in ENCODER_EXPERIMENTS]


@pytest.mark.parametrize("name", QUICK_RUNS)
def test_quick_variant_trains(tmp_path, sequence_data_dir, name):
    config = _config(name, "quick", sequence_data_dir)
    config.mesh.num_devices = 1
    config.data.batch_size = config.data.eval_batch_size = 8
    config.train.num_steps = 4
    config.schedule.warmup_steps = 1
    config.train.log_every = 2
    config.train.eval_every = 2
    config.train.checkpoint_every = 4
    plan = loop.setup(config)
    workdir.start_new(tmp_path / "run", config)
    summary = loop.train(plan, tmp_path / "run")

    dataset, task = ENCODER_EXPERIMENTS[name]
    assert (plan.dataset.name, config.task.name, config.model.name) == (dataset, task, "bert")
    assert summary["steps"] == 4 and summary["status"] == "completed"
    extra = (
        {"test/macro_f1", "test/balanced_accuracy", "test/ece"}
        if task == "classification"
        else set()
    )
    assert set(summary["final_metrics"]) == {"test/accuracy", "test/loss", *extra}
    assert all(math.isfinite(value) for value in summary["final_metrics"].values())
    assert 0.0 <= summary["final_metrics"]["test/accuracy"] <= 1.0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    train = [record for record in records if record["split"] == "train"]
    assert [record["step"] for record in train] == [2, 4]
    for record in train:
        assert {"loss", "accuracy", "grad_norm", "learning_rate"} <= set(record)
        assert all(math.isfinite(value) for value in record.values() if isinstance(value, float))
    assert {record["step"] for record in records if record["split"] == "val"} == {2, 4}

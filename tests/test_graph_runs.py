"""Graph tasks through the real CLI: each task's quick run, exact resume, and clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdl import data
from jaxdl.cli import main
from jaxdl.engine.faults import ENV_VAR
from jaxdl.engine.setup import setup
from tests.run_helpers import experiment_config

QUICK = ("--config.train.progress_bar=False",)


@pytest.fixture(scope="module")
def graph_data(graph_data_dir) -> str:
    return graph_data_dir


def train(workdir: Path, experiment: str, data_dir: str, *overrides: str) -> int:
    return main(
        [
            "train",
            "--config",
            f"experiments/{experiment}.py:quick",
            "--workdir",
            str(workdir),
            f"--config.data.data_dir={data_dir}",
            *QUICK,
            *overrides,
        ]
    )


def summary(workdir: Path) -> dict:
    return json.loads((workdir / "summary.json").read_text())


def test_graph_classification_resumes_bit_exactly(graph_data, tmp_path, monkeypatch, capsys):
    """A run preempted at step 25 (between checkpoints 20 and 30, mid-epoch of the pack stream)
    and started again ends with the parameters and metrics of an uninterrupted run. GIN with
    batch norm: its running statistics are part of the state that must resume too."""
    # One layer (with its batch norm) compiles faster; the resume logic is the same.
    every = ("--config.train.checkpoint_every=10", "--config.model.num_layers=1")
    assert train(tmp_path / "whole", "graph_components", graph_data, *every) == 0
    monkeypatch.setenv(ENV_VAR, "sigterm_at_step=25")
    assert train(tmp_path / "run", "graph_components", graph_data, *every) != 0
    assert not (tmp_path / "run" / "summary.json").exists()
    monkeypatch.delenv(ENV_VAR)
    capsys.readouterr()
    assert train(tmp_path / "run", "graph_components", graph_data, *every) == 0
    assert "resuming at step 25" in capsys.readouterr().out
    whole, resumed = summary(tmp_path / "whole"), summary(tmp_path / "run")
    for key in ("params_fingerprint", "final_metrics"):
        assert resumed[key] == whole[key]
    assert set(whole["final_metrics"]) == {"test/accuracy", "test/loss"}


@pytest.mark.slow  # tests/test_graph_tasks.py checks these tasks' steps in `make test`.
@pytest.mark.parametrize(
    ("experiment", "layer", "metrics"),
    [
        ("karate_club", "gat", {"test/accuracy", "test/loss"}),
        ("graph_triangles_count", "sage", {"test/mae", "test/mse", "test/loss"}),
    ],
)
def test_each_graph_task_trains_from_its_experiment(
    graph_data, tmp_path, experiment, layer, metrics
):
    assert train(tmp_path / "run", experiment, graph_data, f"--config.model.layer={layer}") == 0
    facts = summary(tmp_path / "run")
    assert set(facts["final_metrics"]) == metrics
    assert all(value == value for value in facts["final_metrics"].values())  # No NaN.


def test_link_prediction_learns_on_karate(graph_data, tmp_path, capsys):
    assert train(tmp_path / "run", "karate_club_links", graph_data) == 0
    metrics = summary(tmp_path / "run")["final_metrics"]
    assert set(metrics) == {"test/accuracy", "test/auc", "test/loss"}
    # 40 steps of the quick variant: the held-out edges already outrank random pairs.
    assert metrics["test/auc"] > 0.7
    # Nothing to sample from a graph run: one clear line, exit 2.
    assert main(["sample", "--workdir", str(tmp_path / "run"), "--out", "x.png"]) == 2
    assert "'link_prediction' run; jaxdl sample draws from" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("--config.data.name=digits",), "needs a graph dataset"),
        (("--config.model.readout=node",), "set model.readout='graph'"),
        (("--config.train.grad_accum_steps=2",), "packs of graphs"),
        (("--config.model.layer=gnc",), "model.layer"),
        (("--config.data.max_nodes=4",), "data.max_nodes=4 is too small"),
        (("--config.data.name=karate_club",), "needs graphs with label"),
    ],
)
def test_bad_graph_settings_exit_2_before_writing(graph_data, tmp_path, capsys, overrides, message):
    workdir = tmp_path / "run"
    assert train(workdir, "graph_cycles", graph_data, *overrides) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not workdir.exists()


def fake_molecules(count: int, seed: int) -> list[dict]:
    """ogbg_molpcba records as TFDS gives them: both directions of each bond, NaN labels."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        n = int(rng.integers(3, 12))
        bonds = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)  # A chain.
        labels = rng.integers(0, 2, 128).astype(np.float32)
        labels[rng.random(128) < 0.5] = np.nan
        records.append(
            {
                "node_feat": rng.integers(0, 5, (n, 9)).astype(np.float32),
                "edge_feat": rng.integers(0, 3, (2 * (n - 1), 3)).astype(np.float32),
                "edge_index": np.concatenate([bonds, bonds[:, ::-1]]).astype(np.int64),
                "labels": labels,
                "num_nodes": np.array([n]),
                "num_edges": np.array([2 * (n - 1)]),
            }
        )
    return records


def test_ogbg_molpcba_config_on_mock_data():
    def as_data_source(builder, split, **kwargs):
        del builder, kwargs
        sizes = {"train": 40, "validation": 12, "test": 12}
        if isinstance(split, dict):
            return {
                key: fake_molecules(sizes[name], i) for i, (key, name) in enumerate(split.items())
            }
        return fake_molecules(sizes[split], 0)

    config = experiment_config("ogbg_molpcba", "quick", Path(""))
    config.data.data_dir = ""
    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        plan = setup(config)
    assert "average_precision" in plan.eval_metric_names and plan.dataset.num_classes == 128
    batch = next(data.eval_batches(plan.dataset, "test", batch_size=4))
    assert batch["label"].shape[1:] == (128,) and batch["label_mask"].shape == batch["label"].shape
    real = batch["graph_mask"] > 0
    assert not np.isnan(batch["label"]).any() and 0 < batch["label_mask"][real].mean() < 1
    assert batch["edges"].shape[1:] == (3,) and batch["nodes"].shape[1:] == (9,)

"""Graph tasks through the real CLI: each task's quick run, exact resume, and clear errors."""

import json
from pathlib import Path

import pytest

from jaxdl.cli import main
from jaxdl.engine.faults import ENV_VAR

QUICK = ("--config.train.progress_bar=False",)


@pytest.fixture(scope="module")
def graph_data(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("graph_data"))


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
    and started again ends with the parameters and metrics of an uninterrupted run."""
    every = "--config.train.checkpoint_every=10"
    assert train(tmp_path / "whole", "graph_cycles", graph_data, every) == 0
    monkeypatch.setenv(ENV_VAR, "sigterm_at_step=25")
    assert train(tmp_path / "run", "graph_cycles", graph_data, every) != 0
    assert not (tmp_path / "run" / "summary.json").exists()
    monkeypatch.delenv(ENV_VAR)
    capsys.readouterr()
    assert train(tmp_path / "run", "graph_cycles", graph_data, every) == 0
    assert "resuming at step 25" in capsys.readouterr().out
    whole, resumed = summary(tmp_path / "whole"), summary(tmp_path / "run")
    for key in ("params_fingerprint", "final_metrics"):
        assert resumed[key] == whole[key]
    assert set(whole["final_metrics"]) == {"test/accuracy", "test/loss"}


@pytest.mark.parametrize(
    ("experiment", "metrics"),
    [
        ("karate_club", {"test/accuracy", "test/loss"}),
        ("karate_club_links", {"test/accuracy", "test/auc", "test/loss"}),
        ("graph_triangles_count", {"test/mae", "test/mse", "test/loss"}),
    ],
)
def test_each_graph_task_trains_from_its_experiment(graph_data, tmp_path, experiment, metrics):
    assert train(tmp_path / "run", experiment, graph_data, "--config.model.layer=gat") == 0
    facts = summary(tmp_path / "run")
    assert set(facts["final_metrics"]) == metrics
    assert all(value == value for value in facts["final_metrics"].values())  # No NaN.


def test_link_prediction_learns_on_karate(graph_data, tmp_path):
    assert train(tmp_path / "run", "karate_club_links", graph_data) == 0
    # 40 steps of the quick variant: the held-out edges already outrank random pairs.
    assert summary(tmp_path / "run")["final_metrics"]["test/auc"] > 0.7


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

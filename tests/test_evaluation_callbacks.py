"""Evaluation callbacks (`loop.train(on_evaluation=...)`): they see every validation and can stop
a run, which then ends saved, tested and resumable like any other."""

import json
import shutil

import chex
import pytest

from jaxdl import cli
from jaxdl.engine import loop, workdir
from jaxdl.engine.checkpoints import Checkpointer
from jaxdl.engine.metrics_log import read_records
from tests.test_cli_errors import QUICK
from tests.test_engine import _quick_mlp


def _config():
    return _quick_mlp(num_steps=40, log_every=10, eval_every=10, checkpoint_every=40)


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def _checkpoint_steps(run_dir):
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def _prune_at(stop_step):
    def callback(step, val):
        return "pruned" if step == stop_step else None

    return callback


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """A run that a callback stops at its second evaluation (step 20), with every step that the
    loop asked the checkpointer to save."""
    run_dir = tmp_path_factory.mktemp("pruned") / "run"
    config = _config()
    workdir.start_new(run_dir, config)
    saved, save = [], Checkpointer.save

    def recording_save(self, step, *args, **kwargs):
        saved.append(step)
        return save(self, step, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Checkpointer, "save", recording_save)
        summary = loop.train(loop.setup(config), run_dir, on_evaluation=[_prune_at(20)])
    return run_dir, summary, saved


def test_a_callback_sees_every_validation_as_logged(tmp_path):
    config = _config()
    run_dir = tmp_path / "run"
    workdir.start_new(run_dir, config)
    seen = []
    summary = loop.train(
        loop.setup(config), run_dir, on_evaluation=[lambda step, val: seen.append((step, val))]
    )
    assert summary["status"] == "completed" and summary["steps"] == 40
    assert "stopped_by" not in summary
    logged = [
        (r["step"], {k: v for k, v in r.items() if k not in ("step", "split")})
        for r in read_records(run_dir)
        if r["split"] == "val"
    ]
    assert [step for step, _ in logged] == [10, 20, 30, 40]
    assert [step for step, _ in seen] == [10, 20, 30, 40]
    for (_, val), (_, record) in zip(seen, logged, strict=True):
        assert {"loss", "accuracy"} <= set(val)
        chex.assert_trees_all_equal(val, record)  # Same names (no "val/" prefix), same values.


def test_a_callback_stops_the_run_at_its_evaluation(pruned_run):
    run_dir, summary, saved = pruned_run
    assert summary == _summary(run_dir)
    assert summary["status"] == "pruned"
    assert summary["steps"] == 20
    assert summary["stopped_by"] == {"step": 20, "reason": "pruned"}
    assert summary["stopped_early"] is False
    assert saved.count(20) == 1 and max(saved) == 20  # The stop step, saved exactly once.
    assert _checkpoint_steps(run_dir)[-1] == 20
    assert {"test/loss", "test/accuracy"} <= set(summary["final_metrics"])
    assert summary["final_metrics_step"] == summary["best_metrics"]["step"] <= 20
    records = read_records(run_dir)
    assert max(r["step"] for r in records) == 20
    assert {r["split"] for r in records} == {"train", "val", "test"}


def test_a_stopped_run_resumed_before_its_summary_does_not_train_on(pruned_run, tmp_path):
    original, stopped, _ = pruned_run
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir, symlinks=True)
    (run_dir / "summary.json").unlink()  # Killed after the stop, before the summary.
    records = read_records(run_dir)
    asked = []
    summary = loop.train(
        loop.setup(_config()), run_dir, on_evaluation=[lambda step, val: asked.append(step)]
    )
    assert asked == []  # No evaluation: nothing trained.
    assert summary["status"] == "pruned" and summary["steps"] == 20
    assert summary["stopped_by"] == stopped["stopped_by"]
    assert summary["params_fingerprint"] == stopped["params_fingerprint"]
    assert summary["final_metrics"] == stopped["final_metrics"]
    assert _checkpoint_steps(run_dir) == _checkpoint_steps(original)
    assert read_records(run_dir) == records


def test_the_cli_passes_callbacks_and_exits_0_when_one_stops_the_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--config", QUICK, "--workdir", str(run_dir)]
    argv.append("--config.train.progress_bar=False")
    assert cli.main(argv, evaluation_callbacks=[_prune_at(20)]) == 0  # quick: evals at 20, 40.
    assert "stopped at step 20 by an evaluation callback: pruned" in capsys.readouterr().out
    summary = _summary(run_dir)
    assert summary["status"] == "pruned" and summary["steps"] == 20
    assert summary["stopped_by"] == {"step": 20, "reason": "pruned"}
    # Run again: the finished run is left alone, and that is not an error either.
    assert cli.main(argv, evaluation_callbacks=[_prune_at(20)]) == 0
    assert "already holds a finished run" in capsys.readouterr().out

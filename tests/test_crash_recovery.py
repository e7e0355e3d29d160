"""A kill at any instant, and what it can leave behind: half-written files, unreadable
checkpoints. The run resumes from the newest readable checkpoint to the same bits as an
uninterrupted run, and never deletes a checkpoint."""

import json
import shutil
import signal
from pathlib import Path

import pytest

from jaxdl.cli import main
from jaxdl.engine.metrics_log import read_records
from tests.run_helpers import RESUME_OVERRIDES, run_train, summary
from tests.test_cli_errors import snapshot


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory) -> Path:
    """The reference command killed after step 35: complete checkpoints at steps 20 and 30."""
    workdir = tmp_path_factory.mktemp("killed") / "run"
    result = run_train(workdir, *RESUME_OVERRIDES, faults="kill_at_step=35")
    assert result.returncode == -signal.SIGKILL
    return workdir


@pytest.fixture
def run_dir(killed_run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(killed_run, target)
    return target


def _truncate_largest_file(checkpoint: Path) -> None:
    largest = max(
        (p for p in (checkpoint / "state").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])


def test_half_written_files_and_an_unreadable_newest_checkpoint(reference_run, run_dir):
    # What a kill in the middle of each write leaves: half a metrics line, half a summary in
    # its temporary file, a cut TensorBoard event file; and a truncated newest checkpoint.
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 36, "split": "tra')
    (run_dir / ".summary.json.4242.0badc0de.tmp").write_text('{"final_metr')
    events = next((run_dir / "tensorboard").iterdir())
    events.write_bytes(events.read_bytes()[:-7])
    _truncate_largest_file(run_dir / "checkpoints" / "30")

    resumed = run_train(run_dir, *RESUME_OVERRIDES)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint step 30 cannot be read" in resumed.stdout
    assert "resuming at step 20" in resumed.stdout
    moved = list((run_dir / "unreadable_checkpoints").iterdir())
    assert [p.name.split("-")[0] for p in moved] == ["30"]  # Moved aside, not deleted.
    assert summary(run_dir)["params_fingerprint"] == summary(reference_run)["params_fingerprint"]
    assert read_records(run_dir) == read_records(reference_run)


def test_missing_files_in_a_checkpoint_are_found_too(capsys, run_dir):
    shutil.rmtree(run_dir / "checkpoints" / "30" / "loop")
    code = main(["eval", "--workdir", str(run_dir), "--checkpoint", "latest"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "checkpoint step 30 cannot be read" in err
    assert json.loads(out)["step"] == 20
    assert (run_dir / "checkpoints" / "30").is_dir()  # eval writes nothing, moves nothing.


def test_no_readable_checkpoint_stops_without_moving_anything(capsys, run_dir, tmp_path):
    for step in (20, 30):
        _truncate_largest_file(run_dir / "checkpoints" / str(step))
    before = snapshot(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["checkpoint_every"] == 10
    code = main(
        ["train", "--config", "digits_cnn:quick", "--workdir", str(run_dir), *RESUME_OVERRIDES]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "no checkpoint in" in err and "can be read" in err and "--fresh" in err
    assert snapshot(tmp_path) == before


def test_checkpoint_from_a_newer_format_names_the_version(capsys, run_dir, tmp_path):
    meta = run_dir / "checkpoints" / "30" / "meta" / "metadata"
    assert json.loads(meta.read_text())["checkpoint_format"] == 1
    meta.write_text(json.dumps({"jaxdl_version": "9.0.0", "checkpoint_format": 7}))
    before = snapshot(tmp_path)
    code = main(
        ["train", "--config", "digits_cnn:quick", "--workdir", str(run_dir), *RESUME_OVERRIDES]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "written by jaxdl 9.0.0 (checkpoint format 7)" in err and "Upgrade jaxdl" in err
    assert snapshot(tmp_path) == before


def test_time_based_checkpoints_change_nothing_but_when_saves_happen(reference_run, tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(run_dir, *RESUME_OVERRIDES, "--config.train.checkpoint_every_minutes=0.0001")
    assert result.returncode == 0, result.stderr[-3000:]
    saved = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert any(step % 10 for step in saved), saved  # Saves between the step-based ones.
    assert summary(run_dir)["params_fingerprint"] == summary(reference_run)["params_fingerprint"]
    assert read_records(run_dir) == read_records(reference_run)

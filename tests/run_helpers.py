"""Running the real CLI in a fresh process, as a user would."""

import importlib.util
import json
import os
import signal
import subprocess
from pathlib import Path

import ml_collections

from jaxdl import train

REPO = Path(__file__).resolve().parents[1]
QUICK_CNN = "experiments/digits_cnn.py:quick"
# Checkpoint every 10 of the quick run's 40 steps, so a kill can land between or during saves.
# Every augmentation is on, so resumes and reproducibility cover their random draws too.
RESUME_OVERRIDES = (
    "--config.train.checkpoint_every=10",
    '--config.data.augment=("shift", "flip")',
)


def train_command(workdir: Path, *overrides: str, config: str = QUICK_CNN) -> list[str]:
    return train.command(config, workdir, *overrides)


def run_train(
    workdir: Path, *overrides: str, faults: str = "", config: str = QUICK_CNN
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        # Two devices: every subprocess run is data parallel over a real (virtual) mesh.
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAXDL_FAULTS": faults,
    }
    return subprocess.run(
        train_command(workdir, *overrides, config=config),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def summary(workdir: Path) -> dict:
    return json.loads((workdir / "summary.json").read_text())


def experiment_config(name: str, variant: str, data_dir: Path) -> ml_collections.ConfigDict:
    """experiments/NAME.py's config (VARIANT, e.g. 'quick' or ''), reading data from data_dir."""
    path = REPO / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    config.data.data_dir = str(data_dir)
    config.train.progress_bar = False
    return config


def assert_killed_run_resumes_identically(tmp_path: Path, config: str) -> None:
    """A quick run killed at step 25 (SIGKILL) and resumed from its step-20 checkpoint ends with
    the parameters and test metrics of an uninterrupted one."""
    overrides = ("--config.train.checkpoint_every=10",)
    whole = run_train(tmp_path / "whole", *overrides, config=config)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = run_train(tmp_path / "run", *overrides, faults="kill_at_step=25", config=config)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = run_train(tmp_path / "run", *overrides, config=config)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming at step 20" in resumed.stdout
    for key in ("params_fingerprint", "final_metrics"):
        assert summary(tmp_path / "run")[key] == summary(tmp_path / "whole")[key]


def assert_stopped_run_resumes_identically(
    train, tmp_path: Path, monkeypatch, capsys, at_step: int, keys: tuple[str, ...] = ()
) -> dict:
    """In process: `train(workdir)` whole, then stopped by SIGTERM at `at_step` and run again;
    the resumed run's fingerprint, final metrics and `keys` equal the whole one's. Returns the
    whole run's summary."""
    from jaxdl.engine.faults import ENV_VAR

    assert train(tmp_path / "whole") == 0
    monkeypatch.setenv(ENV_VAR, f"sigterm_at_step={at_step}")
    assert train(tmp_path / "run") != 0
    monkeypatch.delenv(ENV_VAR)
    capsys.readouterr()
    assert train(tmp_path / "run") == 0
    assert f"resuming at step {at_step}" in capsys.readouterr().out
    whole, resumed = (
        json.loads((tmp_path / name / "summary.json").read_text()) for name in ("whole", "run")
    )
    for key in ("params_fingerprint", "final_metrics", *keys):
        assert resumed[key] == whole[key], key
    return whole

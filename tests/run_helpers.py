"""Running the real CLI in a fresh process, as a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICK_CNN = "experiments/digits_cnn.py:quick"
# Checkpoint every 10 of the quick run's 40 steps, so a kill can land between or during saves.
# Every augmentation is on, so resumes and reproducibility cover their random draws too.
RESUME_OVERRIDES = (
    "--config.train.checkpoint_every=10",
    '--config.data.augment=("shift", "flip")',
)


def train_command(workdir: Path, *overrides: str, config: str = QUICK_CNN) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jaxdl.train",
        "--config",
        config,
        "--workdir",
        str(workdir),
        *overrides,
    ]


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

"""Where metrics go: metrics.jsonl (one record per line), TensorBoard events, and the console."""

import json
import math
from pathlib import Path

import tensorboardX

METRICS_FILE = "metrics.jsonl"


def read_records(workdir: Path) -> list[dict]:
    path = workdir / METRICS_FILE
    if not path.exists():
        return []
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))


class MetricsLog:
    """Appends `{"step", "split", **metrics}` records; on resume, first drops records past the checkpoint.

    The dropped records are the ones the resumed run is about to write again, identically.
    """

    def __init__(self, workdir: Path, resume_step: int):
        self.path = workdir / METRICS_FILE
        kept = [r for r in read_records(workdir) if r["step"] <= resume_step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        tmp.replace(self.path)
        self._file = self.path.open("a")
        # purge_step hides events the interrupted process wrote after the checkpoint.
        self._tensorboard = tensorboardX.SummaryWriter(
            str(workdir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None
        )

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        clean = {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, "split": split, **clean}) + "\n")
        self._file.flush()
        for name, value in metrics.items():
            self._tensorboard.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        self._file.close()
        self._tensorboard.close()

"""Where metrics go: metrics.jsonl (one record per line), TensorBoard events, and the console.

A process can be killed in the middle of any write. metrics.jsonl is appended one line at a
time, so a kill leaves at most one partial last line, which `read_records` skips; a resumed run
rewrites the file (atomically) to the records up to its checkpoint before appending. TensorBoard
event files are never read back; `purge_step` hides what the killed process wrote after the
checkpoint.
"""

import json
import math
from pathlib import Path

import tensorboardX

from jaxdl.engine.workdir import write_atomic

METRICS_FILE = "metrics.jsonl"
# Written once, after the last checkpoint, by the final stage of a run; a resume writes it again.
FINAL_SPLITS = ("test",)


def read_records(workdir: Path) -> list[dict]:
    """The complete records of metrics.jsonl (a line cut short by a kill is skipped)."""
    path = workdir / METRICS_FILE
    if not path.exists():
        return []
    records = []
    with path.open() as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "step" in record:
                records.append(record)
    return records


def format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))


class MetricsLog:
    """Appends `{"step", "split", **metrics}` records; on resume, first drops records past the checkpoint.

    The dropped records are the ones the resumed run is about to write again, identically.
    With several processes only one writes (`enabled`); the others' logs do nothing.
    """

    def __init__(self, workdir: Path, resume_step: int, enabled: bool = True):
        self.workdir = workdir
        self.path = workdir / METRICS_FILE
        self.enabled = enabled
        self._file = None
        self._tensorboard = None
        self.rewind(resume_step)

    def rewind(self, step: int) -> None:
        """Keeps the records up to `step` (a checkpoint's) and appends from there."""
        self.close()
        if not self.enabled:
            return
        kept = [
            r
            for r in read_records(self.workdir)
            if r["step"] <= step and r.get("split") not in FINAL_SPLITS
        ]
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.path.open("a")
        # purge_step hides events the interrupted process wrote after the checkpoint.
        self._tensorboard = tensorboardX.SummaryWriter(
            str(self.workdir / "tensorboard"), purge_step=step + 1 if step else None
        )

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, "split": split, **clean}) + "\n")
        self._file.flush()
        for name, value in metrics.items():
            self._tensorboard.add_scalar(f"{split}/{name}", value, step)

    def write_image(self, step: int, tag: str, grid) -> None:
        """A (H, W, 3) uint8 image in TensorBoard (the PNG files are image_grid's)."""
        if self.enabled:
            self._tensorboard.add_image(tag, grid, step, dataformats="HWC")

    def flush(self) -> None:
        if not self.enabled:
            return
        self._file.flush()
        self._tensorboard.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._tensorboard.close()
            self._file = self._tensorboard = None

"""Fault injection for the resume and chaos tests: crash, preempt or poison a run on purpose.

Set JAXDL_FAULTS to comma-separated NAME=STEP items:

- `kill_at_step=30`: SIGKILL right after step 30 ran, between checkpoints;
- `kill_during_save=40`: SIGKILL while the step-40 checkpoint is being written;
- `sigterm_at_step=30`: SIGTERM to itself right after step 30 (a preemption notice);
- `nan_at_step=30` or `nan_at_step=30-39`: the updates that produce these steps become NaN
  inside the compiled step. Transient, like a real fault: not injected again after a rollback.
"""

import dataclasses
import os
import re
import signal

from jaxdl.errors import UserInputError

ENV_VAR = "JAXDL_FAULTS"
_STEP = re.compile(r"^\d+$")
_RANGE = re.compile(r"^(\d+)-(\d+)$")


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    kill_at_step: int | None = None
    kill_during_save: int | None = None
    sigterm_at_step: int | None = None
    nan_at_step: tuple[int, ...] = ()

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> "FaultPlan":
        spec = environ.get(ENV_VAR, "").strip()
        if not spec:
            return cls()
        fields = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for item in spec.split(","):
            name, _, value = item.strip().partition("=")
            steps = _RANGE.match(value) if name == "nan_at_step" else None
            if name == "nan_at_step" and (steps or _STEP.match(value)):
                first, last = (int(steps[1]), int(steps[2])) if steps else (int(value),) * 2
                values[name] = tuple(range(first, last + 1))
            elif name in fields and _STEP.match(value):
                values[name] = int(value)
            else:
                raise UserInputError(
                    f"{ENV_VAR}={spec!r}: expected comma-separated NAME=STEP with NAME in "
                    f"{sorted(fields)} (nan_at_step also takes FIRST-LAST)."
                )
        return cls(**values)

    def after_step(self, step: int) -> None:
        if self.kill_at_step == step:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.sigterm_at_step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    def after_save_started(self, step: int) -> None:
        if self.kill_during_save == step:
            os.kill(os.getpid(), signal.SIGKILL)

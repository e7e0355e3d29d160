"""Fault injection for resume tests: kill the process at a chosen point, as a crash would.

Set JAXDL_FAULTS, e.g. `kill_at_step=30` (SIGKILL right after step 30 ran, between checkpoints)
or `kill_during_save=40` (SIGKILL while the step-40 checkpoint is being written).
"""

import dataclasses
import os
import signal

from jaxdl.errors import UserInputError

ENV_VAR = "JAXDL_FAULTS"


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    kill_at_step: int | None = None
    kill_during_save: int | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> "FaultPlan":
        spec = environ.get(ENV_VAR, "").strip()
        if not spec:
            return cls()
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for item in spec.split(","):
            name, _, value = item.partition("=")
            if name not in fields or not value.isdigit():
                raise UserInputError(
                    f"{ENV_VAR}={spec!r}: expected comma-separated NAME=STEP with NAME in {sorted(fields)}."
                )
            values[name] = int(value)
        return cls(**values)

    def after_step(self, step: int) -> None:
        if self.kill_at_step == step:
            _die()

    def after_save_started(self, step: int) -> None:
        if self.kill_during_save == step:
            _die()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)

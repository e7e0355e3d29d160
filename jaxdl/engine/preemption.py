"""SIGTERM and SIGINT: stop at a step boundary with a checkpoint, and exit with EXIT_PREEMPTED.

Spot VMs and Cloud TPU maintenance send SIGTERM and give about 30 s. While the loop trains, a
signal only sets a flag: the loop finishes the step it is in, saves a checkpoint, flushes its
logs and raises `Preempted`, which the CLI turns into exit code 75 (EX_TEMPFAIL: run the same
command again to resume). Outside the loop (setup, restore, the final test evaluation) there is
nothing unsaved, so the signal raises `Preempted` at once. A second signal exits immediately,
without a checkpoint.

With several processes, every host must save at the same step. JAX's preemption service (started
by `jax.distributed.initialize`) catches SIGTERM on any host and agrees on a step with the
others; `reached` asks it. No handler is installed then: SIGTERM is JAX's, and a SIGINT on one
host could not stop the others at the same step, so it interrupts as Python's default does.
"""

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

EXIT_PREEMPTED = 75


def _process_count() -> int:
    # The CLI installs the handlers before JAX is imported (that takes a second or two, and a
    # SIGTERM then must still exit 75); without JAX there is one process.
    jax = sys.modules.get("jax")
    return 1 if jax is None else jax.process_count()


class Preempted(BaseException):
    """Raised to end a run after a preemption signal (a BaseException, like KeyboardInterrupt,
    so that no `except Exception` on the way mistakes it for a failure)."""

    def __init__(self, signal_name: str, step: int | None = None):
        super().__init__(signal_name, step)
        self.signal_name, self.step = signal_name, step


class Preemption:
    """Installs the handlers while active (`with Preemption() as preemption:`)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._deferring = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "Preemption":
        if threading.current_thread() is not threading.main_thread() or _process_count() > 1:
            return self  # Python delivers signals to the main thread only; see above for hosts.
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is not None:
            print(f"jaxdl: second {name}: exiting now, without a checkpoint", file=sys.stderr)
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signal_name = name
        if not self._deferring:
            raise Preempted(name)
        print(
            f"jaxdl: {name}: finishing this step, then saving a checkpoint "
            f"(send it again to exit at once)",
            file=sys.stderr,
            flush=True,
        )

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        """Within: a signal only sets the flag, which `reached` reports at the next step."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def reached(self, step: int) -> bool:
        """True at the step where this run must save and stop (the same step on every host)."""
        if _process_count() > 1:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self.signal_name is not None

"""The one exception type for bad user input; the CLI turns it into a message and exit code 2."""

import difflib
import os
import traceback
from collections.abc import Iterable
from pathlib import Path

# Exit codes of `jaxdl` (documented in the README): 0 done, 1 a bug (traceback), 2 bad input,
# 3 training stopped on non-finite values, 75 preempted (engine/preemption.py; run it again).
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


class UserInputError(Exception):
    """Bad configuration, data file or workdir: the message names the field or file and the fix."""


def one_line(error: BaseException) -> str:
    """An exception's message on one line (a SyntaxError's without the file and line it repeats)."""
    text = error.msg if isinstance(error, SyntaxError) and error.msg else str(error)
    return " ".join(text.split()) or "(no message)"


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """A ' Did you mean: a, b?' suffix, or '' when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


def unknown_name_error(kind: str, name: str, registered: Iterable[str]) -> UserInputError:
    """Error for a name missing from a registry, listing what is registered."""
    registered = sorted(registered)
    return UserInputError(
        f"unknown {kind} {name!r}.{close_matches(name, registered)} "
        f"Registered {kind}s: {', '.join(registered)}."
    )


def line_in(path: Path, error: BaseException) -> str:
    """' (line N)' for the innermost traceback frame in the user's file `path`, or ''."""
    target = os.path.realpath(path)
    # A SyntaxError in the file itself has no frame there: it was never run, only compiled.
    syntax = isinstance(error, SyntaxError) and error.lineno and error.filename
    if syntax and os.path.realpath(error.filename) == target:
        return f" (line {error.lineno})"
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if os.path.realpath(frame.filename) == target
    ]
    return f" (line {frames[-1].lineno})" if frames else ""

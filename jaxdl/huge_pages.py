"""Transparent huge pages for the host memory XLA allocates on CPU, set when a process starts.

XLA's CPU runtime allocates each step's temporary buffers with malloc and frees them after it.
glibc returns large blocks to the kernel, so the next step touches fresh pages again: 11,000
page faults per step for the reference LSTM, 26,000 for the CNN (about 105 MB of 4 KiB pages,
each zeroed by the kernel). With glibc's `glibc.malloc.hugetlb=1` tunable, malloc marks its
memory for transparent huge pages (`madvise(MADV_HUGEPAGE)`): faults fall to a few hundred per
step and the CNN's step runs about 35% faster, the LSTM's about 20% (2 cores, side by side).

glibc reads tunables only at process start, so the `jaxdl` command re-executes itself once
with the tunable added to `GLIBC_TUNABLES` (before JAX is imported; nothing else has run).
It does nothing where the tunable cannot apply (not Linux/glibc, huge pages set to 'never'),
when `GLIBC_TUNABLES` is already set (the user's choice stands) or when JAXDL_HUGE_PAGES=0.
Code that imports jaxdl as a library starts its own processes: set the variable there.
"""

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _thp_available() -> bool:
    try:
        return "[never]" not in THP_SETTING.read_text()
    except OSError:
        return False


def huge_page_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to re-execute with, or None where nothing should change."""
    if environ.get("JAXDL_HUGE_PAGES") == "0" or "GLIBC_TUNABLES" in environ:
        return None
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or not _thp_available():
        return None
    return {**environ, "GLIBC_TUNABLES": TUNABLE}


def reexec_with_huge_pages() -> None:
    """Replaces this process by the same command with huge pages on (see the module docstring).

    Call it first thing in a process's entry point: the new process starts from scratch, with
    the same arguments, standard streams and process id.
    """
    environment = huge_page_environment(os.environ)
    if environment is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)

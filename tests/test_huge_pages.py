"""The `jaxdl` command's re-execution with transparent huge pages (jaxdl/huge_pages.py)."""

import os
import subprocess
import sys

from jaxdl import huge_pages

PRINT_TUNABLES = (
    "from jaxdl.huge_pages import reexec_with_huge_pages\n"
    "reexec_with_huge_pages()\n"
    "import os, sys\n"
    "print(os.environ.get('GLIBC_TUNABLES'), sys.argv[1:])\n"
)


def test_the_users_settings_stand():
    assert huge_pages.huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) is None
    assert huge_pages.huge_page_environment({"JAXDL_HUGE_PAGES": "0"}) is None


def test_reexecution_adds_the_tunable_and_keeps_the_arguments():
    environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    expected = huge_pages.huge_page_environment(environ)
    run = subprocess.run(
        [sys.executable, "-c", PRINT_TUNABLES, "a", "--b=1"],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    tunables = None if expected is None else huge_pages.TUNABLE
    assert run.stdout.strip() == f"{tunables} ['a', '--b=1']"

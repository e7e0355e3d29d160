"""Quieting the absl logger that TFDS and Orbax log through, for one block of code."""

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def absl_warnings_off() -> Iterator[None]:
    """Only absl errors show inside the block (TFDS and Orbax warn about files jaxdl never
    writes, e.g. a checkpoint item's metadata or a missing dataset's dataset_info.json)."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)

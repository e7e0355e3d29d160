"""Tests run on CPU. Eight virtual devices let one process test sharding over a real mesh."""

import os

# Must be set before JAX initialises its backend; no test may import jax before this file.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

"""jaxdl: a functional JAX research codebase.

Layers point one way: models <- tasks <- engine <- CLI. See docs/architecture.md.
"""

__version__ = "0.3.0"

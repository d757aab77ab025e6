"""osmotic: learning across autonomous agents whose raw data never leaves them.

`osmotic.run(config)` and `osmotic.resume(run_dir)` work for every mode; each mode is a package
with the same face (`osmotic.osml`, `osmotic.holonic`, `osmotic.dssl`: `Config`, `run`,
`resume`). Importing osmotic changes nothing in the process: no environment variables, no
thread or allocator settings (a run sets what it needs while it runs).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "dssl", "holonic", "osml", "resume", "run"]


def __getattr__(name: str) -> Any:
    """`run`, `resume` and the mode packages, imported on first use (a plain `import osmotic`
    stays light)."""
    if name in ("run", "resume"):
        return getattr(importlib.import_module("osmotic.modes"), name)
    if name in ("osml", "holonic", "dssl"):
        return importlib.import_module(f"osmotic.{name}")
    raise AttributeError(f"module 'osmotic' has no attribute {name!r}")

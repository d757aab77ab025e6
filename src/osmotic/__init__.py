"""osmotic: learning across autonomous agents whose raw data never leaves them."""
import os as _os
import sys as _sys

# Idle OpenMP threads sleep instead of spinning. On a busy machine a spinning thread holds a core
# that the thread it waits for needs: two intra-op threads then trained 7-20x slower than one
# (benchmarks/README.md). OpenMP reads this once, when torch loads, so it only takes effect if
# osmotic is imported first; `engines.inprocess.auto_threads` checks which case holds.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

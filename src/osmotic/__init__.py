"""osmotic: learning across autonomous agents whose raw data never leaves them."""
import os as _os
import sys as _sys

# Idle OpenMP threads sleep instead of spinning. On a busy machine a spinning thread holds a core
# that the thread it waits for needs: two intra-op threads then trained 7-20x slower than one
# (benchmarks/README.md). OpenMP reads this once, when torch loads, so it only takes effect if
# osmotic is imported first; `engines.inprocess.auto_threads` checks which case holds.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Numba's own thread pool for the clustering's rank scores (osmosis.metrics): its OpenMP layer
# kills any child forked after a parallel call (multiprocessing's default on Linux), and resets
# the OpenMP thread count that torch shares. A user's NUMBA_THREADING_LAYER wins.
if "numba" not in _sys.modules:
    _os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

__version__ = "0.1.0"

"""`import osmotic` changes nothing in the process: no environment variables, no thread
settings; the `osmotic` command sets what it needs for the process it owns."""
from __future__ import annotations

import subprocess
import sys

_CHECK = """
import os, json
before = dict(os.environ)
import osmotic, osmotic.osml, osmotic.holonic, osmotic.dssl
import torch
assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())
print(json.dumps([osmotic.run.__name__, osmotic.resume.__name__]))
"""


def test_import_osmotic_sets_no_environment_variable() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", _CHECK], env=env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '["run", "resume"]'

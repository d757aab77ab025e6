"""Checkpoints: one safetensors file, tensors plus a JSON document in its metadata.

Written to a temporary file and renamed over the previous checkpoint, so a crash mid-write
leaves the last complete checkpoint intact. Safetensors and JSON only: loading a checkpoint
never executes anything (no pickle).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

_KEY = "osmotic"


def save_checkpoint(path: str | Path, groups: dict[str, dict[str, Tensor]],
                    meta: dict[str, Any]) -> None:
    """Save named groups of tensors (stored as `<group>/<name>`) and a JSON-able `meta`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    flat = {f"{g}/{k}": v.detach().contiguous() for g, ts in groups.items() for k, v in ts.items()}
    save_file(flat, str(tmp), metadata={_KEY: json.dumps(meta)})
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
    """Inverse of `save_checkpoint`: (groups of tensors, meta)."""
    meta = checkpoint_meta(path)
    groups: dict[str, dict[str, Tensor]] = {}
    for key, v in load_file(str(path)).items():
        group, _, name = key.partition("/")
        groups.setdefault(group, {})[name] = v
    return groups, meta


def checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The JSON part alone (the tensors stay on disk)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here")
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})[_KEY])
    except (KeyError, ValueError, OSError, SafetensorError) as e:
        raise ValueError(f"{path}: not an osmotic checkpoint ({e})") from None

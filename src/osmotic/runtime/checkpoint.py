"""Checkpoints: one safetensors file, tensors plus a JSON document in its metadata.

Written to a temporary file and renamed over the previous checkpoint, so a crash mid-write
leaves the last complete checkpoint intact. Safetensors and JSON only: loading a checkpoint
never executes anything (no pickle).
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

_KEY = "osmotic"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit its run: one line naming the file."""


def save_checkpoint(path: str | Path, groups: dict[str, dict[str, Tensor]],
                    meta: dict[str, Any]) -> None:
    """Save named groups of tensors (stored as `<group>/<name>`) and a JSON-able `meta`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    flat = {f"{g}/{k}": v.detach().contiguous() for g, ts in groups.items() for k, v in ts.items()}
    try:
        save_file(flat, str(tmp), metadata={_KEY: json.dumps(meta)})
        with open(tmp, "rb") as f:  # on disk before it replaces the last good checkpoint
            os.fsync(f.fileno())
    except (OSError, SafetensorError) as e:  # a full disk, a size limit: the old one stays
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise
        raise OSError(errno.EIO, _first_line(e).removeprefix("Error while serializing: "),
                      str(path)) from None
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
    """Inverse of `save_checkpoint`: (groups of tensors, meta)."""
    meta = checkpoint_meta(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable tensors ({_first_line(e)})") from None
    groups: dict[str, dict[str, Tensor]] = {}
    for key, v in tensors.items():
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
            meta = json.loads((f.metadata() or {})[_KEY])
    except (KeyError, ValueError, OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: not an osmotic checkpoint ({_first_line(e)})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not an osmotic checkpoint (its metadata is no mapping)")
    return meta


def _first_line(e: BaseException) -> str:
    """An error's first line, cut to 120 characters: a corrupt header can make a library's
    message kilobytes long."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."

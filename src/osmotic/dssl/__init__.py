"""Distributed self-supervised pre-training (D-SSL): SimSiam, MAE and MAE + MAR on clients that
are holarchy terminals, averaged federatedly (FL) or among neighbours (DecL), probed with the
labels afterwards.

The mode's face: `Config` (`DsslConfig`), `run`, `resume` (docs/api.md) and `MODE`; the
training code is imported on first use, so that the CLI's start-up does not load it."""
from __future__ import annotations

from osmotic.dssl.config import DsslConfig
from osmotic.runtime.session import mode_face

Config = DsslConfig
__all__ = ["MODE", "Config", "DsslConfig", "resume", "run"]
__getattr__ = mode_face(__name__)

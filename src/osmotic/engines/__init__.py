"""Engines decide where shards and heads live and how arrays travel; the algorithms don't change."""
from __future__ import annotations


class AgentsLost(RuntimeError):
    """Some agents' process died (a Ray actor, say); the message names them."""


class RunInterrupted(RuntimeError):
    """A run stopped before its end and can be resumed; the message says from where."""

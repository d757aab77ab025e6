"""Engines decide where shards and heads live and how arrays travel; the algorithms don't change."""

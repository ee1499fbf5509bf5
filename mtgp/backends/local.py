"""The local backend: all individuals in this process (jit + vmap)."""

from __future__ import annotations


class Local:
    """Run everything in this process (the default)."""

    def __repr__(self):
        return "Local()"

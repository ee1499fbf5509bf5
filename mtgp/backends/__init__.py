"""Where per-individual work runs: the map over individuals and the
reduction of the E-step sums behind one seam (:class:`Local`: jit + vmap in
this process)."""

from .local import Local

__all__ = ["Local"]

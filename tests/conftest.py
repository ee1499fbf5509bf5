import contextlib

import numpy as np
import pytest

import jax

from mtgp.testing import DenseMagma, dense_kernel  # noqa: F401

# The tests' own oracles compute in float64 with numpy and jax.numpy; mtgp
# itself needs no global flag (tests/test_config.py checks it in a clean
# subprocess).
jax.config.update("jax_enable_x64", True)


BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compilations():
    """Number of XLA compilations (jitted programs and eager ops) in the block."""
    events = []

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE:
            events.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        from jax._src import monitoring

        # Public name since jax 0.4.36; private before (oldest supported: 0.4.30).
        unregister = getattr(
            monitoring,
            "unregister_event_duration_listener",
            getattr(monitoring, "_unregister_event_duration_listener_by_callback", None),
        )
        unregister(listener)


@pytest.fixture
def dense_magma():
    return DenseMagma

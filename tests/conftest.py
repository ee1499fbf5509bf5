import numpy as np
import pytest

import jax

from mtgp.testing import DenseMagma, dense_kernel  # noqa: F401

# The tests' own oracles compute in float64 with numpy and jax.numpy; mtgp
# itself needs no global flag (tests/test_config.py checks it in a clean
# subprocess).
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def dense_magma():
    return DenseMagma

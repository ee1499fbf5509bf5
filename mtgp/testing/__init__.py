"""Dense oracles for tests (and for users who extend mtgp)."""

from .oracles import (DenseMagma, dense_kernel, dense_log_likelihood, dense_masked_log_likelihood,
                      dense_masked_predict, dense_predict, dense_training_conditional)

__all__ = ["DenseMagma", "dense_kernel", "dense_log_likelihood", "dense_masked_log_likelihood",
           "dense_masked_predict", "dense_predict", "dense_training_conditional"]

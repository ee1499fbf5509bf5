"""Every error and warning class mtgp raises, in one place.

* :class:`DataError`: invalid user data (missing column, NaN, duplicate
  input, wrong input dimension, ...); the message names the column, row,
  individual or value at fault.
* :class:`NotFittedError`: a method that needs a fitted model was called
  before ``fit`` (a subclass of scikit-learn's, so ``except`` clauses written
  for scikit-learn catch it too).
* :class:`ModelFileError`: a saved model file is missing, corrupt, truncated
  or not a file of the expected model.
* :class:`JitterWarning`: a matrix was not numerically positive definite
  and a diagonal jitter was added before factorising it.
* :class:`DegenerateOutputsWarning`: the outputs of a multi-output model
  satisfy exact linear relations, or its fitted noise covariance is singular.
"""

from __future__ import annotations

__all__ = ["DataError", "ModelFileError", "NotFittedError", "JitterWarning",
           "DegenerateOutputsWarning", "MtgpDeprecationWarning"]


class DataError(ValueError):
    """Invalid user data (missing column, NaN, duplicate input, ...)."""


class ModelFileError(ValueError):
    """A saved model file cannot be read: missing, truncated, corrupt, of
    another format or of another model class. The message names the file
    and what is wrong."""


class JitterWarning(UserWarning):
    """A matrix was not numerically positive definite and a diagonal jitter
    was added before factorising it."""


class DegenerateOutputsWarning(UserWarning):
    """The training outputs satisfy exact linear relations across outputs, or
    a fitted noise covariance is numerically singular."""


class MtgpDeprecationWarning(FutureWarning):
    """An argument or attribute was renamed; the old name works for one more
    release (a FutureWarning, so that users see it by default)."""


def __getattr__(name):
    # NotFittedError subclasses scikit-learn's, which is imported only when
    # the class is first needed: importing scikit-learn sets environment
    # variables, and ``import mtgp`` must not.
    if name == "NotFittedError":
        return _not_fitted_error()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_NOT_FITTED = []


def _not_fitted_error():
    if not _NOT_FITTED:
        from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

        class NotFittedError(_SklearnNotFittedError):
            """A method that needs a fitted model was called before ``fit``
            (a subclass of scikit-learn's ``NotFittedError``)."""

        NotFittedError.__module__ = __name__
        NotFittedError.__qualname__ = "NotFittedError"
        _NOT_FITTED.append(NotFittedError)
    return _NOT_FITTED[0]

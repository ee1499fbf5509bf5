"""What every mtgp estimator shares (scikit-learn conventions): the
constructor only stores its arguments, ``get_params`` / ``set_params`` /
``sklearn.base.clone`` work, everything learnt ends with ``_``, and
:func:`check_is_fitted` is the one "not fitted" check.

The base class follows scikit-learn's ``BaseEstimator`` protocol without
importing scikit-learn (which sets environment variables when imported:
``import mtgp`` must not)."""

from __future__ import annotations

import inspect

__all__ = ["Estimator", "check_is_fitted"]


def check_is_fitted(estimator, attribute: str) -> None:
    """Raise :class:`~mtgp.exceptions.NotFittedError` unless ``estimator``
    has the learnt attribute ``attribute`` (set at the end of ``fit``)."""
    if not hasattr(estimator, attribute):
        from .exceptions import NotFittedError

        raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet: call fit first")


class Estimator:
    """Base class of mtgp's estimators: parameters are the constructor's
    arguments, stored as given (scikit-learn's estimator protocol)."""

    #: learnt attribute whose presence means "fitted"
    _fitted_attribute = "fit_info_"

    def _check_is_fitted(self) -> None:
        check_is_fitted(self, self._fitted_attribute)

    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments (with ``deep``, also those of nested
        estimators, as ``name__param``)."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set constructor arguments (``name__param`` for nested estimators)."""
        valid = self._get_param_names()
        nested = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; valid: {valid}")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name, None)
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = value is default or bool(value == default)
            except Exception:  # arrays and the like
                same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        from sklearn.utils import Tags, TargetTags  # scikit-learn >= 1.6 only asks for tags

        return Tags(estimator_type=getattr(self, "_estimator_type", None), target_tags=TargetTags(required=True))

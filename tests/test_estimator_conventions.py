"""One set of conventions for every estimator (scikit-learn's): the
constructor only stores its arguments, get_params / set_params / clone work,
the several-start option is there, and every "not fitted" is
mtgp.NotFittedError, a subclass of scikit-learn's."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

import mtgp
from mtgp.kernels import SE

ESTIMATORS = [
    (mtgp.GP, lambda m: m.predict(np.zeros(3))),
    (mtgp.GPFDA, lambda m: m.mean(np.zeros(3))),
    (mtgp.Magma, lambda m: m.predict()),
    (mtgp.MagmaClust, lambda m: m.predict()),
    (mtgp.CoolMTGP, lambda m: m.predict(np.zeros((3, 2)))),
    (mtgp.IndependentGPs, lambda m: m.predict(np.zeros((3, 2)))),
    (mtgp.ICM, lambda m: m.predict(np.zeros((3, 2)))),
    (mtgp.StructuredNoiseMTGP, lambda m: m.predict(np.zeros((3, 2)))),
]


@pytest.mark.parametrize("cls,use", ESTIMATORS, ids=[c.__name__ for c, _ in ESTIMATORS])
def test_estimator_protocol(cls, use):
    kernel = SE(2.0, 3.0)
    est = cls(kernel=kernel) if "kernel" in cls().get_params() else cls(mean_kernel=kernel)
    params = est.get_params(deep=False)
    assert "n_init" in params and "random_state" in params  # the several-start option
    assert any(v is kernel for v in params.values())  # stored as given, not copied
    twin = clone(est)
    assert twin is not est and twin.get_params(deep=False).keys() == params.keys()
    twin.set_params(n_init=3)
    assert twin.n_init == 3 and est.n_init == 1
    with pytest.raises(ValueError, match="invalid parameter"):
        est.set_params(not_a_parameter=1)
    with pytest.raises(mtgp.NotFittedError) as info:
        use(est)
    assert isinstance(info.value, SklearnNotFittedError)
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(est))  # nothing learnt yet

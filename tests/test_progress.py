"""Progress of long fits (on in a terminal, off otherwise or with
verbose=False) and the "column not used" warning: once per fit, not once
per predict call."""

import warnings

import numpy as np
import pytest

import mtgp
from mtgp import _progress
from mtgp.kernels import SE


@pytest.fixture(scope="module")
def data():
    w = mtgp.datasets.load_weight()  # has the extra column Sex
    ids = w.ID.unique()
    return w[w.ID.isin(ids[:10])], w[w.ID == ids[10]]


def _magma(**kw):
    return mtgp.Magma(mean_kernel=SE(30.0, 24.0), individual_kernel=SE(8.0, 24.0), noise=1.0,
                      prior_mean=10.0, max_iter=3, **kw)


def test_enabled_only_in_a_terminal_by_default(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

        def write(self, s):
            pass

        def flush(self):
            pass

    monkeypatch.setattr("sys.stderr", Stream(False))
    assert not _progress.is_enabled(None) and _progress.is_enabled(True) and not _progress.is_enabled(False)
    assert isinstance(_progress.progress(3, "x"), _progress._Silent)
    monkeypatch.setattr("sys.stderr", Stream(True))
    assert _progress.is_enabled(None) and not _progress.is_enabled(False)


def test_fallback_without_tqdm(monkeypatch, capsys):
    import builtins

    real = builtins.__import__

    def no_tqdm(name, *a, **k):
        if name.startswith("tqdm"):
            raise ImportError("no tqdm here")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    with _progress.progress(2, "EM", verbose=True) as bar:
        bar.update(1, loglik=-3.5)
    assert "EM: 1/2 loglik=-3.5" in capsys.readouterr().err


@pytest.mark.parametrize("verbose", [True, False, None])
def test_magma_fit_reports_iterations_and_loglik(data, capsys, verbose):
    train, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = _magma(verbose=verbose, n_init=2, init_iter=1).fit(train)
    err = capsys.readouterr().err
    if verbose:  # tqdm's bar or the plain-line fallback: both name the loop and the value
        assert "Magma EM" in err and "loglik=" in err and "start 2/2" in err
        assert f"{m.history_[-1]:.6g}" in err
    else:  # pytest's captured stderr is not a terminal
        assert err == ""


def test_magmaclust_fit_reports_elbo(data, capsys):
    train, _ = data
    m = mtgp.MagmaClust(n_clusters=2, mean_kernel=SE(30.0, 24.0), individual_kernel=SE(8.0, 24.0), noise=1.0,
                        prior_mean=10.0, max_iter=2, verbose=True).fit(train.drop(columns=["Sex"]))
    err = capsys.readouterr().err
    assert "MagmaClust VEM" in err and f"elbo={m.history_[-1]:.6g}" in err
    assert "verbose" in m.get_params()


@pytest.mark.parametrize("cls", [mtgp.Magma, mtgp.MagmaClust])
def test_unused_column_warned_once_per_fit(data, cls):
    train, child = data
    kw = {"n_clusters": 2} if cls is mtgp.MagmaClust else {}
    model = cls(mean_kernel=SE(30.0, 24.0), individual_kernel=SE(8.0, 24.0), noise=1.0, prior_mean=10.0,
                max_iter=1, verbose=False, **kw)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        model.fit(train)
        for _ in range(3):
            model.predict(child, inputs=np.arange(0.0, 30.0, 10.0))
        model.predict(child.assign(site="A"), inputs=[1.0])  # a new unused column: warned once
        model.predict(child.assign(site="A"), inputs=[1.0])
    msgs = [str(w.message) for w in rec if "are not used" in str(w.message)]
    assert len(msgs) == 2, msgs
    assert "['Sex']" in msgs[0] and "['site']" in msgs[1]
    with warnings.catch_warnings(record=True) as rec:  # a new fit warns again
        warnings.simplefilter("always")
        model.fit(train)
    assert sum("are not used" in str(w.message) for w in rec) == 1

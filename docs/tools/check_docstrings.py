"""Every public name of mtgp has a docstring (the docs build is strict).

Public: the names in ``__all__`` of the modules in :data:`MODULES` (or
their public functions and classes when they have no ``__all__``); for each
public class, its public methods and
properties (not starting with ``_``) defined in mtgp itself (inherited ones
from scikit-learn etc. are not ours to document). Run as a script: prints
the undocumented names and exits 1 if there are any."""

from __future__ import annotations

import inspect
import sys


#: the modules whose public names the API reference shows
MODULES = ("mtgp", "mtgp.kernels", "mtgp.plotting", "mtgp.distributions", "mtgp.config", "mtgp.metrics",
           "mtgp.datasets", "mtgp.exceptions", "mtgp.io", "mtgp.backends", "mtgp.magmaclust", "mtgp.simulate",
           "mtgp.multioutput", "mtgp.base")


def _modules():
    import importlib

    return [importlib.import_module(m) for m in MODULES]


def _public(mod):
    names = getattr(mod, "__all__", None)
    if names is None:  # functions and classes defined in the module itself
        names = [n for n, o in vars(mod).items() if not n.startswith("_")
                 and (inspect.isfunction(o) or inspect.isclass(o)) and o.__module__ == mod.__name__]
    return names


def undocumented() -> list:
    """Qualified names of public objects without a docstring."""
    missing, seen = [], set()
    for mod in _modules():
        for name in _public(mod):
            obj = getattr(mod, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj)):
                continue  # constants and version strings
            qual = f"{mod.__name__}.{name}"
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if not (obj.__doc__ or "").strip():
                missing.append(qual)
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    fn = member
                    if isinstance(fn, (classmethod, staticmethod)):
                        fn = fn.__func__
                    if not (inspect.isfunction(fn) or isinstance(member, property)):
                        continue
                    # an override of a documented base method inherits its docstring
                    # (what help() shows)
                    doc = inspect.getdoc(getattr(obj, attr)) if not isinstance(member, property) \
                        else member.__doc__
                    if not (doc or "").strip():
                        missing.append(f"{qual}.{attr}")
    return missing


if __name__ == "__main__":
    bad = undocumented()
    for q in bad:
        print(f"undocumented: {q}")
    print(f"{len(bad)} public names without a docstring")
    sys.exit(1 if bad else 0)

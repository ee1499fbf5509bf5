"""mkdocs hooks of the strict docs build (mkdocs.yml ``hooks:``).

Before the build: every public name (docs/tools/check_docstrings.py) has a
docstring, and every name of ``mtgp.__all__``, ``mtgp.kernels.__all__`` and
``mtgp.plotting.__all__`` (classes and functions) is rendered by a
``::: module.name`` directive of a page under docs/api/. Either failure stops
the build with the list of names."""

from __future__ import annotations

import glob
import inspect
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _documented_targets(docs_dir):
    """The objects the API pages render: each ``::: target``, and for a
    module rendered with its members, the names of its ``__all__``."""
    import importlib

    targets = set()
    for path in glob.glob(os.path.join(docs_dir, "api", "*.md")):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        for target, opts in re.findall(r"^::: ([\w.]+)\n((?:    .*\n)*)", text, flags=re.M):
            targets.add(target)
            try:
                mod = importlib.import_module(target)
            except ImportError:
                continue
            if "members: false" not in opts:
                targets.update(f"{target}.{n}" for n in getattr(mod, "__all__", []))
    return targets


def missing_from_reference(docs_dir):
    """Public classes and functions that no API page renders."""
    import mtgp
    import mtgp.kernels
    import mtgp.plotting

    targets = _documented_targets(docs_dir)
    names = {t.rsplit(".", 1)[-1] for t in targets}
    out = []
    for mod in (mtgp, mtgp.kernels, mtgp.plotting):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and name not in names:
                out.append(f"{mod.__name__}.{name}")
    return out


def on_pre_build(config, **kwargs):
    from mkdocs.exceptions import PluginError

    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    from check_docstrings import undocumented

    bad = undocumented()
    if bad:
        raise PluginError("public names without a docstring: " + ", ".join(bad))
    missing = missing_from_reference(config["docs_dir"])
    if missing:
        raise PluginError("public names missing from the API reference (docs/api/*.md): "
                          + ", ".join(missing))

"""``mtgp``: the command line.

Subcommands::

    mtgp                      the demo (Magma on the shipped children weight data)
    mtgp demo [options]       the same, with options
    mtgp fit DATA --id ID --input age --output weight [--model magma|magmaclust|cool] -o model.npz
    mtgp predict MODEL [NEW] --inputs 0:72:0.5 -o pred.csv [--plot pred.png] [--gif pred.gif]
    mtgp info MODEL

DATA and NEW are tables: CSV (``.csv``, ``.txt``), TSV (``.tsv``), each
possibly compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``, ``.zip``), or
Parquet (``.parquet``, ``.pq``; needs pyarrow). Long format for Magma and
MagmaClust (one row per observation: individual, input(s), output); wide for
Cool-MTGP (one row per input point, one column per output).

Exit codes: 0 success; 1 a failure of the computation (e.g. a likelihood
that is not finite) or an unexpected error; 2 bad usage (unknown option, bad
``--inputs``); 3 a problem with the data (file missing or unreadable, a
missing column, a value that is not a number, NaN, duplicate rows);
4 a problem with the model file (missing, corrupt, not an mtgp model).

Arguments are parsed before mtgp's numerical modules (JAX) are imported, so
``mtgp --help`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

#: exit codes (documented in the module docstring and ``mtgp --help``)
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_DATA, EXIT_MODEL_FILE = 0, 1, 2, 3, 4

COMMANDS = ("demo", "fit", "predict", "info")

#: key of the command line's own record in a model file (column names, ...)
CLI_KEY = "__mtgp_cli__"

_EPILOG = """\
exit codes: 0 ok, 1 computation failed, 2 usage error, 3 data error
(missing file or column, bad value), 4 model-file error.

With no subcommand, `mtgp` runs the demo (`mtgp demo --help` for its options).
Documentation: the docs/ folder of the project (mkdocs site)."""


class CliError(Exception):
    """An error reported as one line on stderr with exit status ``code``."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------ parsing
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mtgp", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description="Multi-task Gaussian processes (Magma, MagmaClust, Cool-MTGP) on your data.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="Magma on the shipped children weight data (the default run)",
                       description=_DEMO_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--observe-until", type=float, default=24.0,
                   help="held-out children are observed up to this age in months (default 24)")
    d.add_argument("--test-fraction", type=float, default=0.2, help="share of children held out (default 0.2)")
    d.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    d.add_argument("--different-hp", action="store_true", help="Different HP instead of Common HP")
    d.add_argument("--plot", default="mtgp_weight_forecasts.png", help="output PNG (default %(default)s)")
    d.add_argument("--n-plot", type=int, default=4, help="children shown in the plot")
    d.add_argument("--quick", action="store_true", help="small subset (for tests)")
    _add_progress(d)

    f = sub.add_parser("fit", help="train a model on a table and save it",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
                       description="Train Magma, MagmaClust or Cool-MTGP on DATA and save the model "
                       "(an .npz file for `mtgp predict` / `mtgp info`, or mtgp.<Model>.load in Python).")
    f.add_argument("data", help="training table (.csv, .tsv, .csv.gz, ..., .parquet)")
    f.add_argument("--id", default="ID", help="column of the individuals' IDs (Magma, MagmaClust; default ID)")
    f.add_argument("--input", default="Input", help="input column(s), comma-separated (default Input)")
    f.add_argument("--output", default="Output",
                   help="output column (Magma, MagmaClust), or the output columns, comma-separated, "
                   "for Cool-MTGP (default Output)")
    f.add_argument("--model", choices=("magma", "magmaclust", "cool"), default="magma",
                   help="the model (default magma)")
    f.add_argument("--n-clusters", type=int, default=3, help="MagmaClust: number of clusters K (default 3)")
    f.add_argument("--different-hp", action="store_true",
                   help="Magma, MagmaClust: one set of hyper-parameters per individual (default: common)")
    f.add_argument("--kernel", choices=("se", "matern32", "matern52"), default="se",
                   help="kernel of the mean and individual processes (Cool-MTGP: of the inputs; default se)")
    f.add_argument("--lengthscale", type=float, default=None,
                   help="initial lengthscale (default: a third of the input range)")
    f.add_argument("--noise", type=float, default=None,
                   help="initial noise variance (Magma, MagmaClust; default: 5%% of the output variance)")
    f.add_argument("--prior-mean", type=float, default=None,
                   help="prior mean m0 (Magma, MagmaClust; default: the mean output)")
    f.add_argument("--max-iter", type=int, default=None, help="EM / optimiser iterations (model default)")
    f.add_argument("--n-init", type=int, default=1, help="number of starts (default 1)")
    f.add_argument("--seed", type=int, default=0, help="seed of the starts (default 0)")
    f.add_argument("--cool-method", choices=("hierarchical", "approximate"), default="hierarchical",
                   help="Cool-MTGP method (default hierarchical)")
    f.add_argument("--dropna", action="store_true",
                   help="drop rows with a missing value in a used column (default: an error naming them)")
    f.add_argument("-o", "--out", default="model.npz", help="model file to write (default model.npz)")
    _add_progress(f)

    q = sub.add_parser("predict", help="predict new individuals (or new inputs) with a saved model",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
                       description="Predict with a model saved by `mtgp fit`. Magma / MagmaClust: NEW "
                       "holds the observed points of one or more new individuals (same column names "
                       "as the training data; the ID column may be absent for one individual); "
                       "without NEW, the prediction for an individual with no data (the mean process "
                       "plus the individual variation). Cool-MTGP: NEW holds input points.")
    q.add_argument("model", help="model file written by `mtgp fit` (.npz)")
    q.add_argument("new", nargs="?", default=None, help="table of the new individuals' observations")
    q.add_argument("--inputs", default=None,
                   help="where to predict: START:STOP:STEP (STOP included), a comma-separated list, "
                   "or a table file with the input column(s) (default: Magma 500 points over the "
                   "data's range; Cool-MTGP the inputs of NEW)")
    q.add_argument("--level", type=float, default=0.95, help="level of the intervals (default 0.95)")
    q.add_argument("--latent", action="store_true",
                   help="predict the noise-free process instead of new noisy observations")
    q.add_argument("-o", "--out", default=None, help="table to write (.csv, .csv.gz, .parquet; default stdout)")
    q.add_argument("--plot", default=None, help="image of the predictions (.png, .pdf, .svg)")
    q.add_argument("--gif", default=None,
                   help="Magma / MagmaClust: animated GIF of the first individual's prediction as its "
                   "points arrive one by one")
    q.add_argument("--dropna", action="store_true", help="drop rows of NEW with a missing value")
    q.add_argument("--condition", action="store_true",
                   help="Cool-MTGP: condition each row of NEW on the output columns it holds (an empty "
                   "cell: not measured); measured values come back as measured, std 0, unless --latent")
    q.add_argument("--fill-missing", action="store_true",
                   help="Cool-MTGP: the training table with its missing output cells predicted from every "
                   "measured value (measured values as measured, std 0); no NEW or --inputs")
    q.add_argument("--check", type=float, default=None, metavar="FRACTION",
                   help="with --fill-missing: first hold out FRACTION (e.g. 0.1) of the measured cells, "
                   "refit without them (three times) and report how often the intervals cover them, "
                   "per output (mtgp.multioutput.held_out_entry_coverage)")

    i = sub.add_parser("info", help="describe a saved model",
                       description="Print what a model file holds: model, data, fitted hyper-parameters.")
    i.add_argument("model", help="model file (.npz)")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _add_progress(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="verbose", action="store_const", const=True, default=None,
                   help="show progress even when stderr is not a terminal")
    g.add_argument("-q", "--quiet", dest="verbose", action="store_const", const=False,
                   help="no progress bar")


def _normalise_argv(argv):
    """No subcommand (``mtgp`` or ``mtgp --quick``): the demo."""
    argv = list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        return ["demo"] + argv
    return argv


# ------------------------------------------------------------------ tables
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")


def _kind(path: str) -> str:
    name = os.fspath(path).lower()
    for ext in _COMPRESSION:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    for kind, exts in (("parquet", (".parquet", ".pq")), ("tsv", (".tsv", ".tab")),
                       ("csv", (".csv", ".txt"))):
        if name.endswith(exts):
            return kind
    return "csv"


def read_table(path: str, what: str = "data"):
    """Read a CSV / TSV (compressed or not) or Parquet file into a DataFrame;
    a :class:`CliError` (exit 3) names the file and the problem."""
    import pandas as pd

    if not os.path.exists(path):
        raise CliError(f"{what} file {path}: no such file", EXIT_DATA)
    kind = _kind(path)
    try:
        if kind == "parquet":
            try:
                return pd.read_parquet(path)
            except ImportError:
                raise CliError(f"{what} file {path}: reading Parquet needs pyarrow, which is not "
                               "installed (python3 -m pip install pyarrow)", EXIT_DATA) from None
        return pd.read_csv(path, sep="\t" if kind == "tsv" else ",", compression="infer")
    except CliError:
        raise
    except pd.errors.EmptyDataError:
        raise CliError(f"{what} file {path}: empty", EXIT_DATA) from None
    except Exception as exc:  # parser errors, bad compression, bad parquet ...
        raise CliError(f"{what} file {path}: cannot be read as {kind} ({type(exc).__name__}: {exc})",
                       EXIT_DATA) from None


def write_table(df, path):
    """Write ``df`` as CSV (compressed by suffix) or Parquet; ``None``: stdout."""
    if path is None:
        df.to_csv(sys.stdout, index=False)
        return
    try:
        if _kind(path) == "parquet":
            df.to_parquet(path, index=False)
        else:
            df.to_csv(path, index=False, sep="\t" if _kind(path) == "tsv" else ",", compression="infer")
    except ImportError:
        raise CliError(f"writing {path} needs pyarrow, which is not installed "
                       "(python3 -m pip install pyarrow)", EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc}", EXIT_FAILURE) from None


def _split(names: str):
    return [c.strip() for c in str(names).split(",") if c.strip()]


def select_columns(df, columns, path, dropna=False, numeric=(), may_be_empty=()):
    """``df[columns]`` after checking that every column exists and that the
    ``numeric`` ones hold numbers: a :class:`CliError` (exit 3) names the
    file, the column, the row and the value. With ``dropna`` rows with a
    missing value are dropped (and counted on stderr). Empty cells of the
    ``may_be_empty`` columns (Cool-MTGP's outputs: not measured) are kept as
    NaN and neither refused nor dropped."""
    import numpy as np
    import pandas as pd

    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CliError(f"{path}: no column {', '.join(repr(c) for c in missing)} "
                       f"(the columns are {', '.join(map(str, df.columns))})", EXIT_DATA)
    out = df[list(columns)].copy()
    for c in numeric:
        col = out[c]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            conv = pd.to_numeric(col, errors="coerce")
            bad = np.flatnonzero(conv.isna().to_numpy() & col.notna().to_numpy())
            if len(bad):
                r = int(bad[0])
                raise CliError(f"{path}: column {c!r} has a value that is not a number: "
                               f"{col.iloc[r]!r} in data row {r + 1} ({len(bad)} such row(s))", EXIT_DATA)
            out[c] = conv
    required = [c for c in out.columns if c not in set(may_be_empty)]
    na = out[required].isna().to_numpy()
    if na.any():
        rows = np.flatnonzero(na.any(axis=1))
        if dropna:
            print(f"mtgp: dropped {len(rows)} row(s) of {path} with a missing value", file=sys.stderr)
            out = out.drop(index=out.index[rows])
        else:
            c = required[int(np.flatnonzero(na[rows[0]])[0])]
            raise CliError(f"{path}: column {c!r} is empty in data row {int(rows[0]) + 1} "
                           f"({len(rows)} row(s) with a missing value in the used columns; "
                           "--dropna drops them)", EXIT_DATA)
    if len(out) == 0:
        raise CliError(f"{path}: no rows left", EXIT_DATA)
    return out


def parse_inputs(spec: str):
    """``START:STOP:STEP`` (STOP included when on the grid) or ``a,b,c`` ->
    a 1-D array; a :class:`CliError` (exit 2) otherwise."""
    import numpy as np

    try:
        if ":" in spec:
            parts = [float(x) for x in spec.split(":")]
            if len(parts) != 3:
                raise ValueError("expected START:STOP:STEP")
            a, b, s = parts
            if not s > 0 or not b >= a or not np.isfinite([a, b, s]).all():
                raise ValueError("need STEP > 0 and STOP >= START")
            n = int(np.floor((b - a) / s + 1e-9)) + 1
            if n > 1_000_000:
                raise ValueError(f"{n} points")
            return a + s * np.arange(n)
        vals = np.array([float(x) for x in spec.split(",") if x.strip()])
        if vals.size == 0 or not np.isfinite(vals).all():
            raise ValueError("no finite values")
        return vals
    except ValueError as exc:
        raise CliError(f"--inputs {spec!r}: not START:STOP:STEP or a list of numbers ({exc})",
                       EXIT_USAGE) from None


# ------------------------------------------------------------------ runtime
def _runtime():
    """The process-wide options the command wants (opt-in in mtgp.config):
    the persistent compilation cache and the XLA CPU flags."""
    from mtgp import config

    config.set_xla_cpu_flags()
    config.enable_compilation_cache()


def _kernel(name, variance, lengthscale):
    from mtgp import kernels

    cls = {"se": kernels.SE, "matern32": kernels.Matern32, "matern52": kernels.Matern52}[name]
    return cls(variance=variance, lengthscale=lengthscale)


# ------------------------------------------------------------------ fit
def cmd_fit(args) -> int:
    import numpy as np

    import mtgp

    inputs, outputs = _split(args.input), _split(args.output)
    if not inputs or not outputs:
        raise CliError("--input and --output need at least one column name", EXIT_USAGE)
    df = read_table(args.data)
    cool = args.model == "cool"
    if cool:
        if len(outputs) < 2:
            raise CliError("--model cool needs two or more output columns (--output y1,y2,...)", EXIT_USAGE)
        used = inputs + outputs
    else:
        if len(outputs) != 1:
            raise CliError(f"--model {args.model} takes one output column, got {outputs}", EXIT_USAGE)
        used = [args.id] + inputs + outputs
    table = select_columns(df, used, args.data, dropna=args.dropna, numeric=inputs + outputs,
                           may_be_empty=outputs if cool else ())
    if cool:
        _report_missing_outputs(table[outputs], args.data)
    ignored = [c for c in df.columns if c not in used]
    if ignored:
        print(f"mtgp: columns not used: {', '.join(map(str, ignored))}", file=sys.stderr)
    X = table[inputs].to_numpy(dtype=float)
    span = float(np.mean(X.max(axis=0) - X.min(axis=0))) or 1.0
    ls = args.lengthscale if args.lengthscale is not None else span / 3.0
    t0 = time.perf_counter()
    if cool:
        kw = {} if args.max_iter is None else {"max_iter": args.max_iter}
        model = mtgp.CoolMTGP(kernel=_kernel(args.kernel, 1.0, ls), method=args.cool_method,
                              normalize_y=True, n_init=args.n_init, random_state=args.seed, **kw)
        model.fit(table[inputs], table[outputs])
    else:
        long = table.rename(columns={args.id: "ID", outputs[0]: "Output"})
        y = long["Output"].to_numpy(dtype=float)
        v = float(np.var(y)) or 1.0
        m0 = float(np.mean(y)) if args.prior_mean is None else args.prior_mean
        noise = 0.05 * v if args.noise is None else args.noise
        common = dict(mean_kernel=_kernel(args.kernel, v, ls), individual_kernel=_kernel(args.kernel, v / 4, ls),
                      noise=noise, prior_mean=m0, n_init=args.n_init, random_state=args.seed,
                      input_columns=inputs, verbose=args.verbose)
        if args.max_iter is not None:
            common["max_iter"] = args.max_iter
        if args.model == "magma":
            model = mtgp.Magma(common_hp=not args.different_hp, **common)
        else:
            model = mtgp.MagmaClust(n_clusters=args.n_clusters, shared_individual_hp=not args.different_hp,
                                    **common)
        model.fit(long)
    elapsed = time.perf_counter() - t0
    path = model.save(args.out)
    meta = {"model": args.model, "id": None if cool else args.id, "inputs": inputs, "outputs": outputs,
            "data": os.path.basename(args.data), "n_rows": int(len(table)), "fit_seconds": elapsed,
            "mtgp_version": mtgp.__version__}
    _add_cli_record(path, meta)
    print(_fit_summary(model, meta), file=sys.stderr)
    print(f"model written to {path}", file=sys.stderr)
    return EXIT_OK


def _report_missing_outputs(Y, path):
    """Say on stderr how many output values are missing (empty cells): the
    model uses the observed entries only (exact; docs/multioutput.md)."""
    na = Y.isna()
    if not na.to_numpy().any():
        return
    per = ", ".join(f"{c} {int(k)}" for c, k in na.sum().items() if k)
    print(f"mtgp: {int(na.to_numpy().sum())} output value(s) missing in {int(na.any(axis=1).sum())} row(s) "
          f"of {path} ({per}): Cool-MTGP is fitted to the observed entries only (exact, no imputation)",
          file=sys.stderr)


def _add_cli_record(path, meta):
    """Append the command line's record (column names, ...) to a model file;
    mtgp's loaders ignore arrays they do not know."""
    import numpy as np

    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[CLI_KEY] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


def _fit_summary(model, meta) -> str:
    import numpy as np

    name = type(model).__name__
    if meta["model"] == "cool":
        return (f"{name}: {meta['n_rows']} points, inputs {meta['inputs']}, outputs {meta['outputs']}; "
                f"log-likelihood {model.log_marginal_likelihood_:.4g}, {meta['fit_seconds']:.1f} s")
    if meta["model"] == "magmaclust":
        sizes = np.bincount(model.clusters_.to_numpy(), minlength=int(model.n_clusters)).tolist()
        crit = f"ELBO {model.elbo_:.4g}, VBIC {model.vbic_:.4g}, cluster sizes {sizes}"
    else:
        crit = f"log-likelihood {model.log_likelihood_:.4g}"
    return (f"{name}: {len(model.ids_)} individuals, {meta['n_rows']} points; {model.n_iter_} EM "
            f"iterations ({'converged' if model.converged_ else 'not converged'}), {crit}, "
            f"{meta['fit_seconds']:.1f} s")


# ------------------------------------------------------------------ load
def _header(path):
    """(mtgp header, command-line record or {}) of a model file of any format."""
    from .io import read_model

    head, arrays = read_model(path, None)
    return head, (json.loads(str(arrays[CLI_KEY])) if CLI_KEY in arrays else {})


def load_model(path):
    """(model, header, command-line record) of a model file of any mtgp class."""
    import mtgp
    from mtgp.exceptions import ModelFileError

    head, cli = _header(path)
    fmt = str(head.get("format", ""))
    name = fmt.split("/")[0].removeprefix("mtgp.") if fmt.startswith("mtgp.") else ""
    cls = getattr(mtgp, name, None)
    if cls is None or not hasattr(cls, "load"):
        raise ModelFileError(f"{path}: holds {fmt!r}, not a model this version of mtgp can load")
    return cls.load(path), head, cli


# ------------------------------------------------------------------ predict
def cmd_predict(args) -> int:
    import numpy as np

    model, head, cli = load_model(args.model)
    if not 0 < args.level < 1:
        raise CliError(f"--level must be in (0, 1), got {args.level}", EXIT_USAGE)
    if args.check is not None and not args.fill_missing:
        raise CliError("--check goes with --fill-missing (it checks the intervals of the missing cells)",
                       EXIT_USAGE)
    kind = cli.get("model") or {"Magma": "magma", "MagmaClust": "magmaclust"}.get(type(model).__name__, "cool")
    if kind == "cool":
        return _predict_cool(args, model, cli)
    if args.condition:
        raise CliError("--condition is for Cool-MTGP models (Magma conditions on NEW's points already)",
                       EXIT_USAGE)
    if args.fill_missing:
        raise CliError("--fill-missing is for Cool-MTGP models", EXIT_USAGE)
    inputs = list(model.input_columns_)
    id_col = cli.get("id") or "ID"
    out_col = (cli.get("outputs") or ["Output"])[0]
    grid = _grid(args.inputs, inputs)
    individuals = [(None, None)]
    if args.new is not None:
        df = read_table(args.new, "new data")
        cols = ([id_col] if id_col in df.columns else []) + inputs + [out_col]
        new = select_columns(df, cols, args.new, dropna=args.dropna, numeric=inputs + [out_col])
        new = new.rename(columns={out_col: "Output"})
        if id_col in new.columns:
            individuals = [(i, g.drop(columns=[id_col])) for i, g in new.groupby(id_col, sort=False)]
        else:
            individuals = [(None, new)]
    if args.new is not None:  # Magma and MagmaClust: one batched call
        table, preds = _predict_batched(model, individuals, new, id_col, grid, args)
    else:
        table, preds = _predict_each(model, individuals, kind, id_col, grid, args)
    write_table(table, args.out)
    if args.out is not None:
        print(f"{len(table)} predictions of {len(individuals)} individual(s) written to {args.out}",
              file=sys.stderr)
    if args.plot:
        _plot_predictions(model, preds, inputs[0], out_col, args.level, args.plot)
    if args.gif:
        iid, obs, _ = preds[0]
        if obs is None:
            raise CliError("--gif needs NEW: the individual's points", EXIT_USAGE)
        from .plotting import prediction_gif

        prediction_gif(model, obs, grid if grid is not None else np.asarray(preds[0][2].inputs),
                       args.gif, level=args.level, xlabel=inputs[0], ylabel=out_col)
        print(f"animation written to {args.gif}", file=sys.stderr)
    return EXIT_OK


def _predict_batched(model, individuals, new, id_col, grid, args):
    """NEW given: all new individuals in one batched call
    (:meth:`mtgp.Magma.predict_individuals`, :meth:`mtgp.MagmaClust.predict_individuals`:
    no loop over individuals; MagmaClust adds P_cluster_k columns). Without
    --inputs, one grid over the training and all new inputs. For --plot /
    --gif (at most 6 individuals) the Magma Predictions (marginal
    variances) are rebuilt from the table; MagmaClust's mixtures are
    predicted again one by one (their components are not in the table)."""
    import numpy as np

    from .distributions import Prediction

    has_id = id_col in new.columns
    frame = new.rename(columns={id_col: "ID"}) if has_id else new.assign(ID=0)
    table = model.predict_individuals(frame, inputs=grid, noise=not args.latent, level=args.level)
    table.attrs = {}
    table = table.rename(columns={"ID": id_col}) if has_id else table.drop(columns="ID")
    preds = []
    if args.plot or args.gif:
        cols = list(model.input_columns_)
        n = len(table) // len(individuals)
        for k, (iid, obs) in enumerate(individuals[:6]):
            rows = table.iloc[k * n:(k + 1) * n]
            Xp = rows[cols].to_numpy(dtype=float)
            if hasattr(model, "mixture_weights_"):
                pred = model.predict(obs, inputs=Xp, noise=not args.latent)
            else:
                pred = Prediction(Xp, rows.Mean.to_numpy(), np.diag(rows.Var.to_numpy()), cols,
                                  includes_noise=not args.latent, what="Magma prediction")
            preds.append((iid, obs, pred))
    return table, preds


def _predict_each(model, individuals, kind, id_col, grid, args):
    """A Type II prediction (no NEW: one individual with no data)."""
    import pandas as pd

    frames, preds = [], []
    for iid, obs in individuals:
        pred = model.predict(obs, inputs=grid, noise=not args.latent)
        preds.append((iid, obs, pred))
        f = pred.to_frame(args.level)
        if kind == "magmaclust":
            for k, p in enumerate(pred.cluster_probabilities):
                f[f"P_cluster_{k}"] = p
        if iid is not None:
            f.insert(0, id_col, iid)
        frames.append(f)
    return pd.concat(frames, ignore_index=True), preds


def _grid(spec, inputs):
    import numpy as np

    if spec is None:
        return None
    if os.path.exists(spec):
        t = read_table(spec, "--inputs")
        return select_columns(t, inputs, spec, numeric=inputs).to_numpy(dtype=float)
    if len(inputs) != 1:
        raise CliError(f"the model has {len(inputs)} input columns {inputs}: give --inputs as a table "
                       "file holding them", EXIT_USAGE)
    return np.asarray(parse_inputs(spec))[:, None]


def _predict_cool(args, model, cli):
    import pandas as pd

    inputs = cli.get("inputs") or [f"x{j}" for j in range(model.n_features_in_)]
    if args.gif:
        raise CliError("--gif is for Magma and MagmaClust models", EXIT_USAGE)
    given = None
    if args.fill_missing:
        return _fill_missing_cool(args, model, inputs)
    if args.new is not None:
        if args.inputs is not None:
            raise CliError("give either NEW or --inputs for a Cool-MTGP model", EXIT_USAGE)
        df = read_table(args.new, "new data")
        outputs = list(model.output_names_)
        held = [c for c in outputs if c in df.columns] if args.condition else []
        if args.condition and not held:
            raise CliError(f"--condition: {args.new} has none of the output columns {outputs}", EXIT_DATA)
        table = select_columns(df, inputs + held, args.new, dropna=args.dropna, numeric=inputs + held,
                               may_be_empty=held)
        X = table[inputs]
        if args.condition:  # predict matches the columns by name; the others were not measured
            given = table[held]
            print(f"mtgp: each row conditioned on its measured outputs ({int(given.notna().to_numpy().sum())} "
                  f"value(s) in {', '.join(held)})", file=sys.stderr)
    elif args.condition:
        raise CliError("--condition needs NEW, the table holding the measured outputs", EXIT_USAGE)
    elif args.inputs is not None:
        X = pd.DataFrame(_grid(args.inputs, inputs), columns=inputs)
    else:
        raise CliError("a Cool-MTGP model predicts at input points: give NEW or --inputs", EXIT_USAGE)
    pred = model.predict(X.to_numpy(dtype=float), include_noise=not args.latent,
                         Y_observed=None if given is None else given.reset_index(drop=True))
    return _write_cool_predictions(args, pred, X, inputs)


def _fill_missing_cool(args, model, inputs):
    """``predict --fill-missing``: ``model.predict_missing()`` as a table."""
    import numpy as np
    import pandas as pd

    clash = [flag for flag, given in (("NEW", args.new is not None), ("--inputs", args.inputs is not None),
                                      ("--condition", args.condition), ("--latent", args.latent)) if given]
    if clash:
        raise CliError(f"--fill-missing predicts the training table's missing cells: drop {', '.join(clash)}",
                       EXIT_USAGE)
    X = pd.DataFrame(np.asarray(model._X), columns=inputs)
    if args.check is not None:
        _check_held_out(args, model, X)
    pred = model.predict_missing()
    n_missing = int(np.isnan(model._Y_data).sum())
    print(f"mtgp: {n_missing} missing output value(s) of the training table predicted", file=sys.stderr)
    return _write_cool_predictions(args, pred, X, inputs)


def _check_held_out(args, model, X):
    """``--check FRACTION``: :func:`~mtgp.multioutput.held_out_entry_coverage`
    on the training table (inputs ``X``), reported on stderr with the least
    coverage honest intervals reach (binomial, 95%). A fraction outside
    (0, 1) is the function's ValueError, reported as a usage error."""
    import pandas as pd

    from .multioutput import held_out_entry_coverage

    Y = pd.DataFrame(model._Y_data, columns=list(model.output_names_))
    try:
        res = held_out_entry_coverage(model, X, Y, fraction=args.check, level=args.level, n_repeats=3,
                                      random_state=0)
    except ValueError as exc:
        raise CliError(f"--check: {exc}", EXIT_USAGE) from None
    table, level = res["table"], 100.0 * args.level
    print(f"mtgp: held-out check: {args.check:g} of the measured cells held out, the model refitted without "
          f"them, 3 times; coverage of the {level:g}% intervals (%), the least coverage of honest intervals "
          "(binomial, 95%), RMSE, mean std, RMS of (value - mean) / std:",
          file=sys.stderr)
    print(table.round(3).to_string(), file=sys.stderr)
    total = table.iloc[-1]  # every output together
    n, low, cover = int(total["held_out"]), float(total["min_honest"]), float(total["coverage"])
    if cover < low:
        print(f"mtgp: warning: the intervals of the held-out cells cover {cover:.1f}%, below the {low:.1f}% "
              f"honest {level:g}% intervals would reach with {n} cells (binomial, 95%): the intervals of the "
              "missing cells may be too narrow (see the outputs above; docs: multioutput.md, "
              "\"The training table's missing entries\")", file=sys.stderr)
    else:
        print(f"mtgp: the held-out cells' coverage {cover:.1f}% is in the range of honest {level:g}% "
              f"intervals (at least {low:.1f}% with {n} cells, binomial, 95%)", file=sys.stderr)


def _write_cool_predictions(args, pred, X, inputs):
    lo, hi = pred.interval(args.level)
    table = X.reset_index(drop=True).copy()
    for t, name in enumerate(pred.output_names):
        table[name] = pred.mean[:, t]
        table[f"{name}_std"] = pred.std[:, t]
        table[f"{name}_lower"] = lo[:, t]
        table[f"{name}_upper"] = hi[:, t]
    write_table(table, args.out)
    if args.out is not None:
        print(f"{len(table)} predictions written to {args.out}", file=sys.stderr)
    if args.plot:
        from .plotting import plot_multioutput_prediction

        fig = plot_multioutput_prediction(pred, X.to_numpy(dtype=float)[:, 0], level=args.level, xlabel=inputs[0])
        fig.savefig(args.plot, dpi=110)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return EXIT_OK


def _plot_predictions(model, preds, xlabel, ylabel, level, path):
    from .plotting import plot_mixture_prediction, plot_prediction, subplots_grid

    if len(preds) == 1 and hasattr(preds[0][2], "cluster_probabilities"):
        fig = plot_mixture_prediction(preds[0][2], data=preds[0][1], level=level, xlabel=xlabel, ylabel=ylabel)
        fig.savefig(path, dpi=110)
        print(f"plot written to {path}", file=sys.stderr)
        return
    fig, axes = subplots_grid(min(len(preds), 6))
    mean_process = model.hyperposterior(preds[0][2].inputs)
    for ax, (iid, obs, pred) in zip(axes, preds):
        plot_prediction(pred, data=obs, mean_process=mean_process, ax=ax, level=level,
                        xlabel=xlabel, ylabel=ylabel, title=f"{iid}" if iid is not None else None)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}" + (f" (first 6 of {len(preds)} individuals)" if len(preds) > 6 else ""),
          file=sys.stderr)


# ------------------------------------------------------------------ info
def cmd_info(args) -> int:
    import numpy as np

    model, head, cli = load_model(args.model)
    name = type(model).__name__
    info = {"file": os.fspath(args.model), "format": head.get("format"), "model": name,
            "command_line": cli or None}
    fi = head.get("fit_info", {})
    if name in ("Magma", "MagmaClust"):
        info.update(n_individuals=len(model.ids_), n_points=int(sum(len(y) for y in model.inds_.outputs)),
                    input_columns=list(model.input_columns_),
                    individual_kernel=repr(model.individual_kernel_),
                    noise=(float(model.noise_) if np.ndim(model.noise_) == 0
                           else {"median": float(np.median(model.noise_))}),
                    n_iter=model.n_iter_, converged=model.converged_)
        if name == "Magma":
            info.update(common_hp=bool(model.common_hp), mean_kernel=repr(model.mean_kernel_),
                        log_likelihood=model.log_likelihood_)
        else:
            info.update(n_clusters=int(model.n_clusters), mean_kernels=[repr(k) for k in model.mean_kernels_],
                        mixture_weights=model.mixture_weights_.tolist(),
                        cluster_sizes=np.bincount(model.clusters_.to_numpy(),
                                                  minlength=int(model.n_clusters)).tolist(),
                        elbo=model.elbo_, vbic=model.vbic_)
    else:
        info.update(n_points=int(model._X.shape[0]), n_features=int(model.n_features_in_),
                    output_names=list(model.output_names_),
                    n_missing_outputs=int(np.isnan(np.asarray(model._Y, dtype=float)).sum()),
                    kernel=repr(model.kernel_),
                    log_likelihood=model.log_marginal_likelihood_,
                    output_covariance=np.round(model.output_covariance_, 6).tolist(),
                    noise_covariance=np.round(model.noise_covariance_, 6).tolist(),
                    stop_reason=fi.get("stop_reason"),
                    # the fit's collapse diagnostics (docs/multioutput.md, "Noise floor and honest intervals")
                    noise_min_eigenvalue=fi.get("noise_min_eigenvalue"),
                    noise_floor_outputs=fi.get("noise_floor_outputs"))
    info["fit_time_s"] = fi.get("fit_time")
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for k, v in info.items():
            if v is not None:
                print(f"{k:>20}: {v}")
    return EXIT_OK


# ------------------------------------------------------------------ demo
_DEMO_DOC = """\
The demo: Magma on the children weight data shipped with the package (GUSTO
cohort). Most children train the model; each held-out child is forecast from
its first visits (ages up to --observe-until months), and the forecasts at its
later visits are scored (MSE, CIC95) next to a single-task GP fitted on the same
visits. A PNG shows a few forecasts with the data, the 95% band and the mean
process."""


def cmd_demo(args) -> int:
    import numpy as np

    import mtgp
    from mtgp.kernels import SE

    data = mtgp.datasets.load_weight().drop(columns=["Sex"])  # Sex is not a model input here
    ids = data.ID.unique()
    rng = np.random.default_rng(args.seed)
    ids = rng.permutation(ids)
    if args.quick:
        ids = ids[:60]
    n_test = max(1, int(round(args.test_fraction * len(ids))))
    test_ids, train_ids = ids[:n_test], ids[n_test:]
    train = data[data.ID.isin(train_ids)]
    y = train.Output.to_numpy()
    # initial values from the data's own scale (documented in the README)
    m0 = float(y.mean())
    v = float(y.var())
    model = mtgp.Magma(mean_kernel=SE(variance=v, lengthscale=24.0),
                       individual_kernel=SE(variance=v / 4, lengthscale=24.0),
                       noise=0.05 * v, common_hp=not args.different_hp, prior_mean=m0, verbose=args.verbose)
    t0 = time.perf_counter()
    model.fit(train)
    fit_time = time.perf_counter() - t0
    print(f"Magma ({'Different' if args.different_hp else 'Common'} HP) trained on {len(train_ids)} children, "
          f"{len(train)} points: {model.n_iter_} EM iterations, {fit_time:.2f} s, "
          f"log-likelihood {model.log_likelihood_:.2f}")
    print(f"  mean process: {model.mean_kernel_}; individuals: {model.individual_kernel_}, "
          f"noise {np.median(np.atleast_1d(model.noise_)):.4g}")

    grid = np.linspace(0.0, 72.0, 145)
    scores = {"Magma": [], "GP": []}
    plotted = []
    for cid in test_ids:
        child = data[data.ID == cid]
        obs = child[child.Input <= args.observe_until]
        test = child[child.Input > args.observe_until]
        if len(obs) == 0 or len(test) == 0:
            continue
        pm = model.predict(obs, inputs=test[["Input"]])
        gp = mtgp.GP(kernel=SE(variance=v / 4, lengthscale=24.0), noise=0.05 * v, mean=m0).fit(obs)
        pg = gp.predict(test[["Input"]])
        for name, pr in (("Magma", pm), ("GP", pg)):
            scores[name].append((mtgp.metrics.mse(test.Output, pr.mean),
                                 mtgp.metrics.cic95(test.Output, pr.mean, pr.var)))
        if len(plotted) < args.n_plot:
            plotted.append((cid, obs, test, model.predict(obs, inputs=grid), gp.predict(grid)))

    print(f"\nForecasts of {len(scores['Magma'])} held-out children from their visits up to "
          f"{args.observe_until:g} months (later visits predicted):")
    print(f"  {'method':<8}{'MSE (kg^2)':>12}{'sd':>10}{'CIC95 (%)':>12}")
    for name, rows in scores.items():
        a = np.array(rows)
        print(f"  {name:<8}{a[:, 0].mean():>12.3f}{a[:, 0].std():>10.3f}{a[:, 1].mean():>12.1f}")

    if plotted and args.plot:
        from .plotting import plot_forecasts
        fig = plot_forecasts(plotted, model.hyperposterior(grid), xlabel="age (months)", ylabel="weight (kg)")
        fig.savefig(args.plot, dpi=110)
        print(f"\nplot written to {args.plot}")
    return EXIT_OK


# ------------------------------------------------------------------ main
def _warning_printer(command):
    """Warnings as the command line's own lines, ``mtgp fit: warning: ...``
    beside its errors, not Python's ``file:line`` form pointing into mtgp."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"mtgp {command}: warning: {message}", file=sys.stderr)

    return show


def main(argv=None, runtime: bool = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns
    the exit status (see the module docstring).

    ``runtime``: turn on the process-wide options of :func:`_runtime` (the
    compilation cache, the XLA CPU flags). Default: only when ``argv`` is
    None, i.e. when ``main`` is the process's entry point; a call from Python
    with an ``argv`` leaves the calling process's settings alone."""
    if runtime is None:
        runtime = argv is None
    argv = _normalise_argv(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.version:
        from mtgp import __version__

        print(f"mtgp {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    # the numerics are imported once the arguments parse (--help stays quick)
    try:
        if runtime:
            _runtime()
        from mtgp.exceptions import DataError, ModelFileError

        run = {"demo": cmd_demo, "fit": cmd_fit, "predict": cmd_predict, "info": cmd_info}[args.command]
        try:
            with warnings.catch_warnings():  # restored on return: a call from Python keeps its own
                warnings.showwarning = _warning_printer(args.command)
                return run(args)
        except DataError as exc:
            raise CliError(str(exc), EXIT_DATA) from None
        except ModelFileError as exc:
            raise CliError(str(exc), EXIT_MODEL_FILE) from None
        except FloatingPointError as exc:
            raise CliError(str(exc), EXIT_FAILURE) from None
    except CliError as exc:
        print(f"mtgp {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("mtgp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

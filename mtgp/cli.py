"""``mtgp`` command line: the main job.

Default run: Magma on the children weight data shipped with the package
(GUSTO cohort). Most children train the model; each held-out child is
forecast from its first visits (ages up to ``--observe-until`` months), and
the forecasts at its later visits are scored (MSE, CIC95) next to a
single-task GP fitted on the same visits. A PNG shows a few forecasts with
the data, the 95% band and the mean process.
"""

from __future__ import annotations

import argparse
import sys
import time


def _parse(argv):
    p = argparse.ArgumentParser(prog="mtgp", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--observe-until", type=float, default=24.0,
                   help="held-out children are observed up to this age in months (default 24)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of children held out (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    p.add_argument("--different-hp", action="store_true", help="Different HP instead of Common HP")
    p.add_argument("--plot", default="mtgp_weight_forecasts.png", help="output PNG (default %(default)s)")
    p.add_argument("--n-plot", type=int, default=4, help="children shown in the plot")
    p.add_argument("--quick", action="store_true", help="small subset (for tests)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    # the numerics are imported once the arguments parse (``--help`` stays quick)
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
                       noise=0.05 * v, common_hp=not args.different_hp, prior_mean=m0)
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
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""Conv-MT, the convolved multi-output GP baseline of García-Hinde et al.
(2022), Tables 2-3 and Fig. 7, run as the paper ran it: through MOGPTK
(de Wolff, Cuevas & Tobar 2021), its ``CONV`` model (Álvarez & Lawrence's
convolution process with Gaussian smoothing kernels, Q = 1 latent process)
with Titsias's sparse variational inference and inducing points at 50% of
the training size (per output: each output is observed at the N training
inputs), trained by MOGPTK's default optimiser (Adam, here lr 0.1) for 200
iterations (the paper's Sec. 5.4 budget).

MOGPTK runs in its own virtualenv (it pins nothing mtgp needs, but brings
torch): this file is both the driver's helper (``run_convmt``, called by
``cool_scaling_n.py`` and ``cool_mulan.py`` with ``--convmt-python``) and the
worker that the virtualenv's interpreter runs (``python cool_convmt_peer.py
_peer --json OUT.json FILE.npz ...``; each .npz holds Xtr, Ytr, Xte). The
worker imports numpy, torch and mogptk only.

Making the virtualenv: the wheel of mogptk 0.5.3 on PyPI is broken (it holds
two .dist-info folders, mogptk-0.1.9 and mogptk-0.5.3, and pip refuses it:
"multiple .dist-info directories found"); its source distribution installs::

    python3.11 -m venv /tmp/convmt && /tmp/convmt/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    /tmp/convmt/bin/pip download mogptk==0.5.3 --no-deps --no-binary :all: -d /tmp/dl
    /tmp/convmt/bin/pip install /tmp/dl/mogptk-0.5.3.tar.gz

MOGPTK's CONV has no linear-kernel version (its smoothing kernels are
Gaussian), so the Conv-MT rows are the same model for both kernels of the
tables; the paper does not say what it used for its linear-kernel Conv-MT.

Initial values (``--init``): MOGPTK's CONV starts from random smoothing
variances in (0, 1) per input dimension; on standardised inputs with tens of
dimensions (scm20d: D = 61) the squared distances are about 2 D, every
off-diagonal covariance is exp(-D) ~ 0, the gradients vanish and the fit
predicts zero (test RMSE 1.01 on andro). "scaled" (the default here) starts
where mtgp's SE kernel starts, a length scale of about sqrt(D): smoothing
variances D / 100 per output and dimension, base variance D, weights 1 (so
every output's prior variance is (1 / 1.02)^(D / 2), 0.55 at D = 61); "mogptk" keeps MOGPTK's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ITERS, INDUCING_FRAC, LR = 200, 0.5, 0.1


def _worker(argv):
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--json", required=True)
    p.add_argument("--iters", type=int, default=ITERS)
    p.add_argument("--inducing-frac", type=float, default=INDUCING_FRAC)
    p.add_argument("--lr", type=float, default=LR)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=["scaled", "mogptk"], default="scaled")
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    import mogptk

    mogptk.gpr.use_cpu()
    out = []
    for f in a.files:
        d = dict(np.load(f))
        Xtr, Ytr, Xte = d["Xtr"], d["Ytr"], d["Xte"]
        n, T = Ytr.shape
        res = dict(file=str(f), n=int(n), T=int(T))
        try:
            torch.manual_seed(a.seed)
            np.random.seed(a.seed)
            D = Xtr.shape[1]
            # MOGPTK's CONV computes prod(base_variance) / prod(variances) over the D input
            # dimensions: with per-dimension variances ~D ("scaled") both products overflow
            # float64 once D ln D > 709 (atp1d, D = 370: NaN kernel). There (600: a margin) the
            # inputs are divided by sqrt(D) and every variance by D: the same start kernel.
            # Not always: Adam's path depends on the parametrisation, and the rows made at
            # small D stay as they were.
            unit = float(D) if a.init == "scaled" and D * np.log(D) > 600 else 1.0
            Xtr, Xte = Xtr / np.sqrt(unit), Xte / np.sqrt(unit)
            res["input_scale"] = 1.0 / np.sqrt(unit)
            t, c = time.perf_counter(), time.process_time()
            ds = mogptk.DataSet([mogptk.Data(Xtr, Ytr[:, j], name=f"y{j}") for j in range(T)])
            m_ind = max(1, int(round(a.inducing_frac * n)))
            model = mogptk.CONV(ds, Q=1, inference=mogptk.Titsias(inducing_points=m_ind,
                                                                  init_inducing_points="random"))
            if a.init == "scaled":
                k = model.gpr.kernel[0]
                k.weight.assign(np.ones(T))
                k.variance.assign(np.full((T, D), D / 100.0 / unit))
                k.base_variance.assign(np.full(D, D / unit))
            losses, _ = model.train(method="Adam", iters=a.iters, lr=a.lr)
            res["fit_s"], res["cpu_s"] = time.perf_counter() - t, time.process_time() - c
            t = time.perf_counter()
            _, mu, _, _ = model.predict([Xte] * T)
            res["predict_s"] = time.perf_counter() - t
            res["mean"] = np.column_stack([np.asarray(m).ravel() for m in mu]).tolist()
            res.update(n_iter=a.iters, inducing=m_ind, loss_first=float(losses[0]), loss_last=float(losses[-1]))
        except Exception as exc:  # report, keep going
            res["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        out.append(res)
        print(f"    mogptk CONV n={n}: " + (f"fit {res['fit_s']:.1f} s" if "fit_s" in res else res["error"]),
              flush=True)
    import platform

    from importlib.metadata import version

    versions = {"mogptk": version("mogptk"), "torch": torch.__version__,
                "python": platform.python_version(), "torch threads": torch.get_num_threads()}
    Path(a.json).write_text(json.dumps({"runs": out, "versions": versions}))


def run_convmt(python, files, folder, timeout, iters=ITERS, threads=1, init="scaled"):
    """Fit Conv-MT on each .npz in one subprocess of ``python`` (MOGPTK's
    virtualenv); returns {"runs": [...], "versions": {...}} or, when the
    process failed or ran past ``timeout`` seconds, {"runs": [], "error": ...}."""
    js = Path(folder) / "convmt.json"
    js.unlink(missing_ok=True)
    cmd = [str(python), str(Path(__file__).resolve()), "_peer", "--json", str(js), "--iters", str(iters),
           "--threads", str(threads), "--init", init, *map(str, files)]
    env = dict(os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    log = Path(folder) / "convmt.stderr"
    try:
        with open(log, "w") as fh:
            r = subprocess.run(cmd, env=env, timeout=timeout, stderr=fh)
        if r.returncode == 0 and js.exists():
            return json.loads(js.read_text())
        err = f"exit code {r.returncode}"
    except subprocess.TimeoutExpired:
        err = f"ran past {timeout:.0f} s"
    print(f"  Conv-MT peer failed ({err}); end of its stderr:\n" + log.read_text()[-2000:], flush=True)
    return {"runs": [], "versions": {}, "error": err}


def convmt_note(python):
    """'mogptk X, torch Y (`python`)' for a results page, or why not."""
    try:
        r = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('mogptk'), "
                            "m.version('torch'))"], capture_output=True, text=True, timeout=300)
        v = r.stdout.split()
        return f"mogptk {v[0]}, torch {v[1]} (`{python}`)" if r.returncode == 0 else r.stderr.strip()[-300:]
    except (OSError, subprocess.SubprocessError) as exc:
        return f"not runnable: {exc}"


if __name__ == "__main__":
    if sys.argv[1:2] != ["_peer"]:
        raise SystemExit(__doc__)
    _worker(sys.argv[2:])

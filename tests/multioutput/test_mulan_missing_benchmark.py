"""benchmarks/cool_mulan_missing.py's merging of runs made apart (--merge)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def test_missing_benchmark_merge_replaces_rows_and_fills_warm_times():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from cool_mulan_missing import INDEP, PEER, merge_runs

    key = dict(dataset="slump", split=0, removed=0.1)
    old = pd.DataFrame([dict(key, model="Std-MT (P=1 + diag)", status="ok", fit_s=5.0, rmse_removed=1.2),
                        dict(key, model=PEER, status="ok", fit_s=3.0, rmse_removed=0.9),
                        dict(key, model=INDEP, status="ok", fit_s=0.5, rmse_removed=1.0),
                        dict(key, model="HCool", status="ok", fit_s=9.0, rmse_removed=0.8)])
    new = pd.DataFrame([dict(key, model="Std-MT (P=1 + diag)", status="ok", fit_s=6.0, fit_s_warm=1.0,
                             rmse_removed=0.85)])
    df = merge_runs([old, new]).set_index("model")
    assert len(df) == 4 and df.loc["Std-MT (P=1 + diag)", "rmse_removed"] == 0.85
    assert df.loc["Std-MT (P=1 + diag)", "fit_s_warm"] == 1.0
    assert df.loc[PEER, "fit_s_warm"] == 3.0 and df.loc[INDEP, "fit_s_warm"] == 0.5
    assert np.isnan(df.loc["HCool", "fit_s_warm"])  # compiled on its first fit: no warm time invented

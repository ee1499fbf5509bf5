"""Each Cool-MTGP benchmark's --quick mode runs end to end and writes its
results page (into a temporary folder). Marked slow: ~20-60 s each."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("script,page", [
    ("cool_synthetic.py", "cool_synthetic.md"),
    ("cool_two_tasks.py", "cool_two_tasks.md"),
    ("cool_mulan.py", "cool_mulan.md"),
])
def test_benchmark_quick(tmp_path, script, page):
    subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick", "--out", str(tmp_path)],
                   check=True, timeout=600, cwd=REPO)
    text = (tmp_path / page).read_text()
    assert "Produced by" in text and "--quick" in text
    assert list(tmp_path.glob("*.png"))

"""The documentation's own checks, quick: every public name has a docstring
and a place in the API reference (what the strict docs build enforces,
docs/tools/hooks.py), and the tutorial data file is the one of its
provenance note. With Debian's chromium and a built site (``mkdocs build``),
a screenshot of the home page is checked too."""

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "docs", "tools"))


def test_every_public_name_has_a_docstring():
    from check_docstrings import undocumented

    assert undocumented() == []


def test_every_public_name_is_in_the_api_reference():
    from hooks import missing_from_reference

    assert missing_from_reference(os.path.join(ROOT, "docs")) == []


def test_tutorial_data_matches_its_provenance():
    path = os.path.join(ROOT, "docs", "data", "berkeley_growth.csv.gz")
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    with open(os.path.join(ROOT, "docs", "data", "PROVENANCE.md"), encoding="utf-8") as fh:
        assert f"{digest}  berkeley_growth.csv.gz" in fh.read()


def test_home_page_screenshot(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    index = os.path.join(ROOT, "site", "index.html")
    if browser is None or not os.path.exists(index):
        pytest.skip("needs chromium on PATH and a built site (mkdocs build)")
    shot = tmp_path / "home.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,900", f"file://{index}"], check=True, timeout=120,
                   capture_output=True)
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert img.shape[:2] == (900, 1200)
    header = img[:48].reshape(-1, 3).mean(axis=0)  # the material theme's indigo header bar
    assert header[2] > header[0] + 40, header
    assert img[100:].std() > 10  # text drawn on the page body

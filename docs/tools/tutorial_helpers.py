"""Helpers of the tutorials' code blocks (run by markdown-exec during the
docs build, from the repository root). They return HTML for the block to
``print`` (markdown-exec captures the block's own ``print`` only)."""

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def show(fig, fmt="png", dpi=80):
    """``fig`` as an inline HTML image (for a block with ``html="1"``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="figure" src="data:image/{fmt};base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def show_file(path, mime="image/gif"):
    """An image file (e.g. a GIF) as an inline HTML image."""
    with open(path, "rb") as fh:
        data = base64.b64encode(fh.read()).decode()
    return f'<img alt="animation" src="data:{mime};base64,{data}"/>'

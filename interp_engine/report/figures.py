"""Matplotlib figures for the reports: every plot of the package is drawn here."""
from __future__ import annotations

from typing import Any, Tuple

__all__ = ["agg_figure"]


def agg_figure(*, figsize: Tuple[float, float]) -> Any:
    """A matplotlib Figure drawn by the Agg canvas (no pyplot, no global
    backend change).  matplotlib is an optional dependency: ImportError
    saying how to install it when it is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # optional dependency
        raise ImportError("plotting needs matplotlib, an optional dependency: "
                          "pip install matplotlib") from e
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig

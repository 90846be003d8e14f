"""Usage charts as PNG bytes (matplotlib, Agg backend, no pyplot global state).

Rendering takes a few hundred milliseconds, so callers run it in a thread:
`await asyncio.to_thread(usage_chart, days, top, labels)`. Each call builds its own `Figure`.
Every word drawn comes from the caller (`ChartLabels`, in the reader's language): the core says
no sentences of its own.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 4.0, 100


@dataclass(frozen=True)
class ChartLabels:
    """The chart's words and how it writes a day, in the reader's language."""

    title: str  # over the credits per day
    top_title: str  # over the top members
    unit: str  # the credits axis
    nobody: str  # in place of the top members when there are none
    day: Callable[[date], str]  # a day under its bar


def usage_chart(
    days: Sequence[tuple[date, int]], top: Sequence[tuple[str, int]], labels: ChartLabels
) -> bytes:
    """Credits per day (bars) beside the top members (horizontal bars), as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})

    ticks = [labels.day(d) for d, _ in days]
    values = [v for _, v in days]
    left.bar(range(len(values)), values, color="#5865F2")
    step = max(1, len(ticks) // 10)
    left.set_xticks(range(0, len(ticks), step), ticks[::step], rotation=45, ha="right", fontsize=8)
    left.set_title(labels.title)
    left.set_ylabel(labels.unit)
    left.grid(axis="y", alpha=0.3)
    if not any(values):
        left.set_ylim(0, 1)

    names = [name if len(name) <= 24 else name[:23] + "…" for name, _ in top][::-1]
    spent = [credits for _, credits in top][::-1]
    if spent:
        right.barh(range(len(spent)), spent, color="#57F287")
        right.set_yticks(range(len(names)), names, fontsize=8)
    else:
        right.set_yticks([])
        right.text(0.5, 0.5, labels.nobody, ha="center", va="center", transform=right.transAxes)
    right.set_title(labels.top_title)
    right.set_xlabel(labels.unit)
    right.grid(axis="x", alpha=0.3)

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a glyph missing from the font for an emoji name
        fig.tight_layout()
        fig.savefig(buffer, format="png")
    return buffer.getvalue()

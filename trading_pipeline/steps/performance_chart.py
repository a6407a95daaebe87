"""The equity curve vs SPY as a PNG: growth of 100 for the portfolio and for SPY, one point per trading day.

Rendered with matplotlib's Agg canvas through the object API (no pyplot global state, no display), so it
is safe inside a Dagster run or a CLI command. The Dagster UI shows the PNG from a markdown metadata value
(`![…](data:image/png;base64,…)`): a metadata entry that is the image itself, not a link to a file that
may not exist on the machine the UI runs on. The same bytes are also written to a file for the CLI.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

from trading_pipeline.domain.performance import PerformanceRow, growth_curve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PORTFOLIO_COLOUR = "#1f77b4"
BENCHMARK_COLOUR = "#ff7f0e"


def render_equity_chart(rows: Sequence[PerformanceRow], *, title: str = "Equity vs SPY") -> bytes:
    """PNG bytes of the growth-of-100 curves of the portfolio and SPY over `rows` (any order)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ordered = sorted(rows, key=lambda r: r.trading_date)
    curve = growth_curve([(r.trading_date, r.portfolio_return, r.spy_return) for r in ordered])
    figure = Figure(figsize=(8, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if not curve:
        axes.text(0.5, 0.5, "no trading days stored yet", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
    else:
        # One x step per trading day: weekends and holidays are not gaps in the line.
        x = list(range(len(curve)))
        # Floats only here, for drawing; the numbers themselves stay Decimal everywhere else.
        axes.plot(x, [float(p.portfolio) for p in curve], color=PORTFOLIO_COLOUR, marker="o", ms=3, label="portfolio")
        spy = [(i, float(p.benchmark)) for i, p in zip(x, curve, strict=True) if p.benchmark is not None]
        if spy:
            axes.plot(*zip(*spy, strict=True), color=BENCHMARK_COLOUR, marker="o", ms=3, label="SPY")
        axes.axhline(100, color="#cccccc", linewidth=0.8, zorder=0)
        step = max(1, len(curve) // 8)
        axes.set_xticks(x[::step], [p.day.isoformat() for p in curve[::step]], rotation=30, ha="right", fontsize=8)
        axes.set_ylabel("growth of 100")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="best", fontsize=8)
        title = f"{title}, {curve[0].day} – {curve[-1].day}"
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def chart_markdown(png: bytes, alt: str = "equity vs SPY") -> str:
    """Markdown that shows the PNG inline (the Dagster UI renders data-URI images in md metadata)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def write_chart(png: bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path.resolve()

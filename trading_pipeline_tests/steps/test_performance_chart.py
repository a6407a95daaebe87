"""The equity-vs-SPY chart is a real PNG that shows both curves, and the markdown table matches the rows."""

from __future__ import annotations

import base64
import io
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
from PIL import Image

from trading_pipeline.domain.performance import PerformanceRow
from trading_pipeline.steps.performance_chart import (
    BENCHMARK_COLOUR,
    PORTFOLIO_COLOUR,
    chart_markdown,
    render_equity_chart,
)
from trading_pipeline.steps.performance_table import markdown_table, text_table

D = Decimal


def row(day: date, ret: str | None, spy: str | None, **kw) -> PerformanceRow:
    values = {
        "realized_pnl": D("12.5"),
        "unrealized_pnl": D("-3"),
        "equity": D("100009.5"),
        "trades_opened": 2,
        "trades_closed": 1,
        "wins": 1,
        "losses": 0,
        "buys": 2,
        "sells": 1,
        "closes_by_reason": {"stop_loss": 1},
        "spy_close": D(500),
    }
    values.update(kw)
    return PerformanceRow(
        trading_date=day,
        portfolio_return=None if ret is None else D(ret),
        spy_return=None if spy is None else D(spy),
        **values,
    )


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def colour_count(png: bytes, colour: str) -> int:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return int(np.all(pixels == np.array(rgb(colour)), axis=-1).sum())


def test_chart_is_a_png_with_both_curves() -> None:
    rows = [row(date(2026, 11, 2) + timedelta(days=n), "0.01", "-0.005") for n in range(10)]
    png = render_equity_chart(rows)
    image = Image.open(io.BytesIO(png))
    image.verify()  # a truncated or corrupt PNG raises here
    assert image.format == "PNG" and image.size == (800, 400)
    assert colour_count(png, PORTFOLIO_COLOUR) > 200 and colour_count(png, BENCHMARK_COLOUR) > 200


def test_chart_without_benchmark_or_rows_still_renders() -> None:
    no_spy = render_equity_chart([row(date(2026, 11, 2), "0.01", None), row(date(2026, 11, 3), "0.02", None)])
    assert colour_count(no_spy, PORTFOLIO_COLOUR) > 100 and colour_count(no_spy, BENCHMARK_COLOUR) == 0
    empty = render_equity_chart([])
    assert Image.open(io.BytesIO(empty)).size == (800, 400)


def test_chart_markdown_carries_the_png_itself() -> None:
    png = render_equity_chart([row(date(2026, 11, 2), "0.01", "0.02")])
    text = chart_markdown(png)
    assert text.startswith("![equity vs SPY](data:image/png;base64,") and text.endswith(")")
    assert base64.b64decode(text.split(",", 1)[1][:-1]) == png


def test_tables_show_each_day_and_the_compounded_total() -> None:
    rows = [row(date(2026, 11, 3), "0.10", "0.01"), row(date(2026, 11, 2), "0.10", None, closes_by_reason={})]
    md = markdown_table(rows)
    lines = md.splitlines()
    assert lines[0].startswith("| date | realized P&L | unrealized P&L | equity | return | SPY | vs SPY |")
    assert lines[2].startswith("| 2026-11-02 | 12.50 | -3.00 | 100,009.50 | 10.00% | n/a | n/a | 100% | 2 | 1 | — |")
    assert lines[3].startswith("| 2026-11-03 |") and "| 9.00% |" in lines[3]
    # 1.1 × 1.1 = +21%; SPY +1% over the range; 2 wins of 2 closes; reasons summed.
    assert lines[4] == (
        "| total (2 days) | 25.00 | -3.00 | 100,009.50 | 21.00% | 1.00% | 20.00% | 100% | 4 | 2 | stop_loss 1 | 4:2 |"
    )
    text = text_table(rows)
    assert text.splitlines()[0].split()[:3] == ["date", "realized", "P&L"]
    assert "total (2 days)" in text and "21.00%" in text
    assert markdown_table([]) == "_(no trading days)_"

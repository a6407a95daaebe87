"""`sim-broker --session-now` / `ui --session-now`: whatever the hour, the simulated market is open now."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from trading_pipeline.domain.calendar import session_open_now
from trading_pipeline.sim.market import Market

NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    "wall",
    [
        datetime(2026, 11, 24, 11, 0, tzinfo=NY),  # in a session: now itself
        datetime(2026, 11, 24, 22, 0, tzinfo=NY),  # the evening: that day's open, replayed
        datetime(2026, 11, 28, 3, 0, tzinfo=NY),  # Saturday night: Friday's (half-day) open
        datetime(2026, 11, 26, 12, 0, tzinfo=NY),  # Thanksgiving: Wednesday's open
    ],
)
def test_the_simulated_market_is_open_from_the_first_request(wall: datetime) -> None:
    start = session_open_now(wall.astimezone(UTC))
    assert start <= wall
    assert Market(seed=7, n_symbols=50, start=start).clock().is_open
    if wall.hour == 11:
        assert start == wall.astimezone(UTC)


def test_cli_accepts_session_now() -> None:
    from trading_pipeline.cli.main import build_parser

    args = build_parser().parse_args(["sim-broker", "--session-now", "--port", "0"])
    assert args.session_now is True
    assert build_parser().parse_args(["ui", "--session-now"]).session_now is True

"""Default limits of the checks (documented in the README's checks table)."""

from __future__ import annotations

from datetime import timedelta

MAX_OPEN_POSITION_TRADING_DAYS = 3
# BUY:SELL — buys are only a problem when nothing could sell: positions open and no successful stop-loss run
# for this long after the buys (3 missed 2-minute runs). Calibrated in bench/calibration.py (bench/RESULTS.md):
# no false failure over healthy simulated weeks, the seed's failure caught within 15 simulated minutes. The
# fixed ratio it replaces (5:1 after the first hour) failed healthy calm days and took an hour to see the seed.
SELLS_OWED_GRACE = timedelta(minutes=6)
MAX_QUOTE_AGE = timedelta(minutes=5)
MIN_LETTER_PVALUE = 1e-4
STOP_LOSS_RUNS_CONSIDERED = 20
MIN_STOP_LOSS_SUCCESS_RATE = 0.9
CROSS_TO_CLOSE_MAX_RUNS = 2
MAX_TRANSACTION_MS = 500.0

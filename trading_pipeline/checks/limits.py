"""Default limits of the checks (documented in the README's checks table)."""

from __future__ import annotations

from datetime import timedelta

MAX_OPEN_POSITION_TRADING_DAYS = 3
MAX_BUY_SELL_RATIO = 5.0
RATIO_JUDGED_AFTER = timedelta(hours=1)  # BUY-heavy first hour is the open's entries, not a failure
MAX_QUOTE_AGE = timedelta(minutes=5)
MIN_LETTER_PVALUE = 1e-4
STOP_LOSS_RUNS_CONSIDERED = 20
MIN_STOP_LOSS_SUCCESS_RATE = 0.9
CROSS_TO_CLOSE_MAX_RUNS = 2
MAX_TRANSACTION_MS = 500.0

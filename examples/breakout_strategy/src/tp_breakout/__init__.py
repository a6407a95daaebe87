"""An example entry strategy for trading-pipeline, packaged the way your own can be."""

from tp_breakout.strategy import BreakoutParams, BreakoutStrategy

__all__ = ["BreakoutParams", "BreakoutStrategy"]

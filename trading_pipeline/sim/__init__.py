"""Local Alpaca-compatible paper broker: a seeded NYSE market simulator, an HTTP server speaking the subset
of Alpaca's trading and market-data APIs the pipeline uses, and fault injection.

Only the CLI and tests import this package; the product talks to it over HTTP through alpaca-py.
"""

from trading_pipeline.sim.faults import FaultConfig, FaultInjector
from trading_pipeline.sim.market import Market
from trading_pipeline.sim.server import SimBroker, serve

__all__ = ["FaultConfig", "FaultInjector", "Market", "SimBroker", "serve"]

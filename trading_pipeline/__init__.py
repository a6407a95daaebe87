"""trading-pipeline: a Dagster-orchestrated paper-trading pipeline that cannot fail silently."""

__version__ = "0.1.0"

"""A broker resource with short timeouts and fast backoff, so fault-injection runs through Dagster stay quick.

It is the product's `BrokerResource` building the product's `AlpacaBroker`; only the retry policy and the
request timeout are the test's (the production defaults wait up to 10 s per request and 30 s per Retry-After).
"""

from __future__ import annotations

from trading_pipeline.broker.alpaca import AlpacaBroker
from trading_pipeline.broker.base import Broker
from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.resources.broker import BrokerResource

FAST_RETRY = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.05, max_retry_after=0.05)
REQUEST_TIMEOUT = 0.3
ALL_FAULTS = ("429", "500", "503", "504", "timeout", "drop", "drop_502")


class FastBrokerResource(BrokerResource):
    def build(self) -> Broker:
        return AlpacaBroker(
            api_key=self.api_key,
            secret_key=self.secret_key,
            trading_url=self.trading_url,
            data_url=self.data_url,
            paper=self.paper,
            timeout=self.request_timeout_seconds,
            retry=FAST_RETRY,
        )


def fault_rates(total: float) -> dict[str, float]:
    """`total` split evenly over every fault kind the sim can inject."""
    return {f"rate_{kind}": total / len(ALL_FAULTS) for kind in ALL_FAULTS}

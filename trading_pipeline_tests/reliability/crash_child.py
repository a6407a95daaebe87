"""A stop-loss sweep in its own process that stops dead at a chosen step of the close protocol.

Run by the crash tests (`python crash_child.py --database-url … --broker-url … --now … --crash-at STEP`),
which SIGKILL it once it prints `REACHED <STEP>`. The sweep is the product's own `run_stop_loss_sweep`;
the hooks only observe the module-level functions it calls and park the process at the chosen point:

- `after_claim`  the first claim open → closing committed; nothing sent to the broker yet
- `in_submit`    the close order is about to be POSTed: the child waits for a line on stdin, the test
                 holds the POST in the sim with latency and kills the process while it is in flight
- `after_submit` the broker accepted (and filled) the order; nothing recorded yet
- `after_record` the first close is recorded as closed; the other exits were sent (their fills are read in
                 one listing after all the run's closes), not recorded yet
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from typing import Any

from trading_pipeline.broker.alpaca import AlpacaBroker
from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.steps import closes
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store.database import Database

STEPS = ("after_claim", "in_submit", "after_submit", "after_record")


def park(step: str) -> None:
    print(f"REACHED {step}", flush=True)
    while True:  # until the test's SIGKILL
        time.sleep(60)


def install(step: str, broker: AlpacaBroker) -> None:
    if step == "after_claim":
        real_claim = claims_repo.claim_for_close

        def claim(*args: Any, **kwargs: Any) -> bool:
            won = real_claim(*args, **kwargs)
            if won:
                park(step)
            return won

        claims_repo.claim_for_close = claim  # type: ignore[assignment]  # the module every step uses
    elif step in ("in_submit", "after_submit"):
        real_submit = broker.submit_order

        def submit(request: Any, **options: Any) -> Any:
            if step == "in_submit":
                print(f"REACHED {step}", flush=True)
                sys.stdin.readline()  # the test makes the sim hold the POST, then lets it go; it kills us in flight
                return real_submit(request, **options)
            order = real_submit(request, **options)
            park(step)
            return order

        broker.submit_order = submit  # type: ignore[method-assign]
    elif step == "after_record":
        real_record = claims_repo.record_close

        def record(*args: Any, **kwargs: Any) -> bool:
            done = real_record(*args, **kwargs)
            if done:
                park(step)
            return done

        claims_repo.record_close = record  # type: ignore[assignment]
    else:
        raise SystemExit(f"unknown step {step!r}; expected one of {', '.join(STEPS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--now", required=True, help="the run's clock (the sim's simulated time), ISO 8601")
    parser.add_argument("--crash-at", required=True, choices=STEPS)
    parser.add_argument("--run-id", default="crashing-run")
    args = parser.parse_args(argv)
    broker = AlpacaBroker(
        "crash-key",
        "crash-secret",
        trading_url=args.broker_url,
        data_url=args.broker_url,
        timeout=10.0,
        retry=RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.02),
    )
    install(args.crash_at, broker)
    with Database(args.database_url) as db:
        # One close at a time, so the kill leaves exactly one close at its step (concurrent closes are each
        # this same protocol; test_concurrent_closes.py covers them together).
        closes.run_stop_loss_sweep(
            db, broker, run_id=args.run_id, now=datetime.fromisoformat(args.now), close_concurrency=1
        )
    print("FINISHED without reaching the crash point", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

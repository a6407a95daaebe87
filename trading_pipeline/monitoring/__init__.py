"""Is the automation working? Read from the Dagster instance and told to a person.

`runs` and `health` read the instance (run records, daemon heartbeats, schedule/sensor states, stop-loss
freshness); `preflight` is the go/no-go before the open; `status` the health-first report; `watchdog` the
dead-man's switch that runs outside the daemon. Alert delivery itself is the `alerts` resource's
(`resources/alert_delivery.py`), which the watchdog uses directly.
"""

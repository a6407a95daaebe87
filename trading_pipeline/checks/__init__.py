"""Asset checks: outcome invariants first, run results second, the scheduler last.

Each module holds the checks of one asset: its `SPECS` (name, description a trader understands, blocking
or not) and small functions that turn data into an `AssetCheckResult` with the numbers behind the verdict.
Only a blocking ERROR check fails a run; every other failure reaches people through the check-alert sensor.
"""

"""Reliability and safety suite (issue 8): faults, crashes, overlap, DB outages, bad input, secrets.

Every test is marked `reliability` (`pytest -m reliability` runs the suite alone) and also runs in the
normal test run, so each one is kept small: short simulated days, short timeouts, few positions.
"""

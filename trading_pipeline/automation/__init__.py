"""Schedules and sensors. Every one defaults to RUNNING: Dagster's default is STOPPED, and a stopped
schedule is exactly the "scheduled is not working" failure this product exists to prevent."""

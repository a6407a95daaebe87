"""Drive the whole product against the local sim broker: the demo (a simulated session through Dagster)
and the soak (a fault-injected session of sweeps, judged from the DB and the broker's book)."""

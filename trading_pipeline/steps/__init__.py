"""The pipeline's steps as plain Python: read → decide → act → record.

Each asset is a thin Dagster wrapper around one step, so the same code runs in a Dagster run, in the
benchmarks and in the soak. A step talks to the DB only through the `store/*_repository` modules (short
transactions) and to the broker only between those transactions.
"""

"""`trading-pipeline`: one module per command group (db, demo + sim-broker + soak, monitoring, reporting);
`main` builds the parser from them and dispatches."""

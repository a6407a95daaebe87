"""Dagster assets: thin wrappers that run one step and describe its outcome as metadata."""

"""``python -m target_duckdb_batch``: the target's command line."""

from __future__ import annotations

from target_duckdb_batch.target import TargetDuckDBBatch

TargetDuckDBBatch.cli()

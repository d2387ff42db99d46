"""target-duckdb-batch: a Singer target that loads into DuckDB with ``read_json``."""

from __future__ import annotations

from target_duckdb_batch.target import TargetDuckDBBatch

__all__ = ["TargetDuckDBBatch"]

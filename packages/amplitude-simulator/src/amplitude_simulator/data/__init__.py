"""The simulated project's data: value tables, users, rows, and the hour-indexed dataset."""

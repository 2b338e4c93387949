"""The benchmark harness (bench/run.py) and the single-purpose measurements beside it."""

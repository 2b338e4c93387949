"""Data-quality asset checks: expectations, reconciliation and freshness of every table."""

"""Dagster definitions by concern: one folder per layer or concern."""

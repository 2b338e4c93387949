"""Fixtures of the end-to-end tier: the shared ones (`shop` among them) are in tests/conftest.py."""

"""End-to-end tests: a real Postfix chain on loopback (see conftest.py)."""

"""Builders the tests share (messages, keys, certificates, packets), so that no test module imports another.

Test modules import them as ``support.NAME`` (tests/ is on the path through tests/conftest.py); the
fixtures stay in the conftest files.
"""

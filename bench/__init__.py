"""The benchmark suite (bench/README.md), a package so that the tests import its helpers as ``bench.shared``,
``bench.failure_pairs``, ``bench.linear`` and ``bench.postfix_instance`` (pytest puts the clone's root on the
path: ``pythonpath`` in pyproject.toml). Its scripts still run as files: ``.venv/bin/python bench/run.py``."""

"""The ``ciphermilter`` command line: one module per command group."""

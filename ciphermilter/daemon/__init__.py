"""The milter daemon: pymilter glue, worker processes, serving and statistics."""

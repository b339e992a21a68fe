"""The Python runner: what serves a Python workload inside its container (see ``__main__``)."""

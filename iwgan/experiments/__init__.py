"""The experiments, one module each, each behind one command of ``python -m iwgan``."""

"""Spark drivers (imported as ``torchonspark.sparkjobs``).

What will live here: the convert, train, evaluate and features jobs, the worker loop that each
barrier task runs (which also runs under plain ``torchrun``), and the ``torchonspark`` CLI.
"""

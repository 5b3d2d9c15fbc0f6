"""Configuration as data: model definitions (``models/*.yaml``), solver recipes and Spark properties.

This file holds no code; it makes the folder an installable package (``torchonspark.conf``) so the
YAML files travel with the wheel and are found with ``importlib.resources`` wherever it is installed.
"""

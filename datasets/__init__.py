"""Data for training and evaluation (imported as ``torchonspark.datasets``).

What will live here: walking and validating an ImageNet tree, the petastorm Unischema, the
converter's per-file work, sharded readers and the training/eval transforms, and the digits
demo set. This package never imports ``torchonspark.sparkjobs``.
"""

"""Spark drivers and what they launch (imported as ``torchonspark.sparkjobs``), in three parts:

- the jobs a user runs, one module each, each a ``torchonspark`` subcommand and a file spark-submit
  runs: ``make_digits``, ``convert_imagenet``, ``train_resnet``, ``evaluate``, ``features``, ``demo``,
  ``doctor``, ``pack_env``; ``status`` and ``report`` read run folders without Spark;
  ``train_worker`` is the torchrun entry point; ``cli`` is ``torchonspark`` and ``commandline`` what
  their command lines share;
- ``cluster``: the Spark glue (session, preflight, the barrier launch, tasks over shards);
- ``engine``: training and scoring without Spark (worker loop, job, recipe, checkpoints, run
  folder, export).

Dependencies flow jobs -> cluster -> engine, checked by a test.
"""

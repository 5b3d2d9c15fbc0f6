"""Spark drivers and what they launch (imported as ``torchonspark.sparkjobs``).

Jobs, each a ``torchonspark`` subcommand and a file spark-submit runs: ``make_digits``,
``convert_imagenet``, ``train_resnet``, ``evaluate``, ``features``, ``demo``, ``doctor``,
``pack_env``. ``train_worker`` is what each barrier task runs; it and the modules it uses
(``recipe``, ``runfolder``, ``export``, ``train_args``) import no Spark, so it also runs under
plain torchrun.
"""

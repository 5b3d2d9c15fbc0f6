"""The training engine (imported as ``torchonspark.sparkjobs.engine``): everything a training or
scoring process does, without Spark, so it also runs under plain torchrun on a machine with no JVM.

``job`` (the job description and its arguments), ``recipe`` (the solver as data), ``worker`` (the
training loop), ``distributed`` (device, process group, SGD step), ``checkpoint``, ``runfolder``,
``plots`` (the run's figures), ``tensorboard`` (its TensorBoard event files), ``export`` (the model
folder), ``scoring`` (top-k hits, a model over one shard) and ``stops`` (the failures a relaunch
would only repeat, and how a worker reports one). Imports neither pyspark nor petastorm, nor the
jobs or the cluster glue (tested).
"""

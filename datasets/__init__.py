"""Data for training and evaluation (imported as ``torchonspark.datasets``).

``fs`` is the one filesystem layer (local paths and URLs); ``imagenet`` lists an ImageNet-style
tree, ``archives`` ImageNet's release archives as they lie; ``images`` checks and fixes one file;
``schema`` is the petastorm Unischema of a converted set; ``transforms`` decode and augment;
``loader`` reads one rank's shard in batches; ``digits`` writes the embedded default set. Only
``schema`` imports Spark (for its row type): the loader and transforms run in the training worker,
which has no Spark. Never imports ``torchonspark.sparkjobs``.
"""

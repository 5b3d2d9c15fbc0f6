"""The Spark glue (imported as ``torchonspark.sparkjobs.cluster``): the session every driver uses
(``session``), the checks a barrier job needs before it starts (``preflight``, with YARN's side in
``yarn``), the launch of the training engine on barrier tasks (``launch``), the relaunches and the
stall watchdog around it (``supervisor``), and plain tasks over a split's shards (``shards``).
Imports the engine, never the jobs."""

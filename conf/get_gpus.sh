#!/usr/bin/env bash
# GPU discovery script for Spark's resource scheduling (spark.{executor,driver,worker}.resource.gpu.discoveryScript).
# Prints the GPUs this container may use as {"name": "gpu", "addresses": ["0", "1", ...]}.
# YARN isolates GPUs per container with CUDA_VISIBLE_DEVICES when its GPU plugin is on; nvidia-smi
# lists every GPU of the node, so the visible ones win when the variable is set.
set -euo pipefail
if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
  addresses=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n')
else
  addresses=$(nvidia-smi --query-gpu=index --format=csv,noheader)
fi
joined=$(echo "$addresses" | sed 's/.*/"&"/' | paste -sd, -)
echo "{\"name\": \"gpu\", \"addresses\": [$joined]}"

"""Recipes of short real runs that several test modules train."""

# 10 iterations of a tiny net that display, validate and checkpoint along the way: what the run's
# logs (TensorBoard, MLflow) are read back against.
LOGGED = """model: {name: tiny, main_branch: normal, num_output_stage1: 16, blocks: [1, 1, 1, 1], fc_layers: false}
batch_size: 16
base_lr: 0.05
max_iter: 10
crop_size: 32
scale_range: [32, 40]
mirror: false
display: 2
test_interval: 5
snapshot: 5
seed: 5
"""

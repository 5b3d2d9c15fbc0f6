"""Recipes the tests share: TINY, the smallest net that trains (2 iterations of 16 images at 16x16)."""

TINY = """model: {name: tiny, main_branch: normal, num_output_stage1: 8, blocks: [1, 1, 1, 1], fc_layers: false}
batch_size: 16
base_lr: 0.05
max_iter: 2
crop_size: 16
scale_range: [16, 20]
mirror: false
display: 1
"""

"""faster_rcnn_sampling_free_R_50_FPN_1x.py with the box head's activations recomputed in the backward pass.

Training on every proposal sends ~2x the sampled baseline's RoIs through the box head, and detectron2 keeps
each RoI's pooled features and fc activations for the backward pass. Here the pooler and box head run in
chunks of 512 RoIs per image under activation checkpointing: the same losses and gradients, the memory
of one chunk, at the cost of a second forward of the box head (not a method setting; see
SamplingFreeROIHeads' ``box_head_recompute_chunk`` and the project README for measured costs).
"""
from .faster_rcnn_sampling_free_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.box_head_recompute_chunk = 512

train.output_dir = "./output/faster_rcnn_sampling_free_recompute_R_50_FPN_1x"

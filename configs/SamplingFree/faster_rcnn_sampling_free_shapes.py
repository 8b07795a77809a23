"""Sampling-Free Faster R-CNN on the synthetic shapes dataset, small enough for 2 CPU cores.

configs/Baselines/faster_rcnn_shapes.py (ResNet-18 from scratch, 64-channel FPN, 500 proposals per image in
training, 4 classes) with the same changes as faster_rcnn_sampling_free_R_50_FPN_1x.py: no sampling in
either stage, optimal biases, guided losses, class-adaptive thresholds. batch_size_per_image (256 anchors,
128 RoIs) stays as each stage's loss normaliser.
"""
from sampling_free import SamplingFreeOutputLayers, SamplingFreeROIHeads, SamplingFreeRPN

from ..Baselines.faster_rcnn_shapes import dataloader, lr_multiplier, model, optimizer, train

model.proposal_generator._target_ = SamplingFreeRPN
model.proposal_generator.prior_prob = None  # Eq. 4, C = 1
model.proposal_generator.guided_loss = "paper"  # Eqs. 5-6
model.roi_heads._target_ = SamplingFreeROIHeads  # no sampling
# Not a method setting: an int (e.g. 512) recomputes the box head's activations in the backward pass,
# chunk by chunk, for less memory and more time (faster_rcnn_sampling_free_recompute_R_50_FPN_1x.py).
model.roi_heads.box_head_recompute_chunk = None
model.roi_heads.box_predictor._target_ = SamplingFreeOutputLayers
model.roi_heads.box_predictor.loss_rois_per_image = "${..batch_size_per_image}"  # the loss normaliser
model.roi_heads.box_predictor.prior_prob = None  # Eq. 4 carried to the softmax
model.roi_heads.box_predictor.optimal_bias_init = True
model.roi_heads.box_predictor.guided_loss = "paper"  # Eqs. 5-6
model.roi_heads.box_predictor.class_adaptive_threshold = True  # Eq. 7

train.output_dir = "./output/faster_rcnn_sampling_free_shapes"

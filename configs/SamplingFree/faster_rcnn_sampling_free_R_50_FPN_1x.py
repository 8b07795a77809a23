"""Sampling-Free Faster R-CNN, ResNet-50-FPN, 1x on COCO (Chen et al., arXiv:1909.04868).

The baseline's recipe (configs/Baselines/faster_rcnn_R_50_FPN_1x.py: 16 images, lr 0.02, 90k iterations)
with both stages trained on all their samples: the RPN on every anchor that is not ignored (no 256-anchor
sample) and the ROI heads on every proposal (no 512-RoI sample at 25% foreground), each with the optimal
bias (Eq. 4), the guided loss of its own box loss (Eqs. 5-6), and the class-adaptive thresholds (Eq. 7) at
inference. Nothing is tuned. The authors' code: faster_rcnn_sampling_free_official_R_50_FPN_1x.py.
"""
from sampling_free import SamplingFreeOutputLayers, SamplingFreeROIHeads, SamplingFreeRPN

from ..Baselines.faster_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.proposal_generator._target_ = SamplingFreeRPN
# batch_size_per_image (256) stays as the RPN's loss normaliser (256 x images); no anchor is sampled.
model.proposal_generator.prior_prob = None  # Eq. 4 with C = 1: pi = N_f / N on the first batch with foreground
model.proposal_generator.guided_loss = "paper"  # Eqs. 5-6: loss_rpn_cls = stopgrad(L_loc / L_cls) * L_cls

model.roi_heads._target_ = SamplingFreeROIHeads  # every proposal labelled, none sampled
# Not a method setting: an int (e.g. 512) recomputes the box head's activations in the backward pass,
# chunk by chunk, for less memory and more time (faster_rcnn_sampling_free_recompute_R_50_FPN_1x.py).
model.roi_heads.box_head_recompute_chunk = None
model.roi_heads.box_predictor._target_ = SamplingFreeOutputLayers
# batch_size_per_image (512) stays as the ROI losses' normaliser (512 x images); every proposal is used.
model.roi_heads.box_predictor.loss_rois_per_image = "${..batch_size_per_image}"
model.roi_heads.box_predictor.prior_prob = None  # pi = N_f / (N * C) on the first batch; biases log(pi / (1 - C pi)), 0
model.roi_heads.box_predictor.optimal_bias_init = True
model.roi_heads.box_predictor.guided_loss = "paper"  # Eqs. 5-6: loss_cls = stopgrad(L_box / L_cls) * L_cls
# Eq. 7: theta_j = N_j / N from the labelled proposals of all training batches; test_score_thresh (the
# baseline's 0.05) is then only the fallback of an untrained model.
model.roi_heads.box_predictor.class_adaptive_threshold = True

train.trained_checkpoint = ""  # no published detectron2 weights for this model
train.output_dir = "./output/faster_rcnn_sampling_free_R_50_FPN_1x"

"""FasterRCNN-ResObj, ResNet-50-FPN, 1x, 800px (paper Table 3: 38.4 AP on test-dev; sampling 37.2).

detectron2's Faster R-CNN recipe with the RPN's random 256-anchor sampling replaced by residual
objectness (T=2): all valid anchors take part, proposals are ranked by the final objectness. The ROI
heads are unchanged.
"""
from resobj import ResObjRPN, ResObjRPNHead

from ..Baselines.faster_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

# The paper's Faster R-CNN rows use maskrcnn-benchmark's e2e_faster_rcnn_R_{50,101}_FPN_1x.yaml
# (footnotes 7, 8): shorter side 800, longer side <= 1333, one scale (detectron2's recipe: 640-800).
dataloader.train.mapper.augmentations[0].short_edge_length = (800,)
dataloader.train.mapper.augmentations[0].max_size = 1333

model.proposal_generator._target_ = ResObjRPN
del model.proposal_generator.positive_fraction  # no sampling: every valid anchor takes part
model.proposal_generator.cascade_mode = "paper"
model.proposal_generator.gate = "image"
# Losses / (batch_size_per_image x images) = / 256 N, detectron2's RPN normaliser: a positive anchor
# weighs what it weighs in the sampled RPN. "num_pos" = / EMA of the positive count, as RetinaNet.
model.proposal_generator.loss_normalizer = "batch_size"

model.proposal_generator.head._target_ = ResObjRPNHead
model.proposal_generator.head.num_steps = 2  # T, as the RetinaNet default (Table 2c)
model.proposal_generator.head.residual_conv_dim = "${.in_channels}"
model.proposal_generator.head.isolate_residual_grad = True  # Table 2a
model.proposal_generator.head.objectness_prior = 0.01  # biased init: all anchors take part

train.trained_checkpoint = ""
train.output_dir = "./output/faster_rcnn_resobj_R_50_FPN_1x"

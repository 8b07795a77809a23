"""FasterRCNN-ResObj (T=2) on the synthetic shapes dataset: configs/Baselines/faster_rcnn_shapes.py
with the RPN of faster_rcnn_resobj_R_50_FPN_1x.py."""
from resobj import ResObjRPN, ResObjRPNHead

from ..Baselines.faster_rcnn_shapes import dataloader, lr_multiplier, model, optimizer, train

model.proposal_generator._target_ = ResObjRPN
del model.proposal_generator.positive_fraction  # no sampling: every valid anchor takes part
model.proposal_generator.head._target_ = ResObjRPNHead
model.proposal_generator.head.num_steps = 2
model.proposal_generator.head.residual_conv_dim = "${.in_channels}"
model.proposal_generator.head.objectness_prior = 0.01

train.output_dir = "./output/faster_rcnn_resobj_shapes"

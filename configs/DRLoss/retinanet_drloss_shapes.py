"""RetinaNet with the DR loss on the synthetic shapes dataset, small enough for 2 CPU cores.

The CPU demo: configs/Baselines/retinanet_shapes.py (ResNet-18 from scratch, 64-channel FPN and head,
4 images per batch) with the same changes as retinanet_drloss_R_50_FPN_1x.py.
"""
import math

from drloss import RetinaNetDRLoss

from ..Baselines.retinanet_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetDRLoss
del model.focal_loss_alpha
del model.focal_loss_gamma
model.pos_lambda = 1.0
model.neg_lambda = 0.1 / math.log(3.5)
model.margin = 0.5
model.logistic_scale = 6.0
model.cls_loss_weight = 4.0
model.scope = "image"
model.class_grouping = "pooled"
model.head.prior_prob = 0.5

train.output_dir = "./output/retinanet_drloss_shapes"

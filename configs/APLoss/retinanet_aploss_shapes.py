"""RetinaNet with AP-loss on the synthetic shapes dataset, small enough for 2 CPU cores.

The CPU demo: configs/Baselines/retinanet_shapes.py (ResNet-18 from scratch, 64-channel FPN and head,
4 images per batch, all ranked in one list) with the same changes as retinanet_aploss_R_50_FPN_1x.py.
"""
from aploss import RetinaNetAPLoss

from ..Baselines.retinanet_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetAPLoss
del model.focal_loss_alpha  # no focal loss (§3)
del model.focal_loss_gamma
model.delta = 1.0
model.interpolated_ap = True
model.box_loss_weight = 1.0
model.loss_normalizer_momentum = 0.9

train.output_dir = "./output/retinanet_aploss_shapes"

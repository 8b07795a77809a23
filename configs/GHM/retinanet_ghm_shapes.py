"""RetinaNet with GHM-C + GHM-R on the synthetic shapes dataset, small enough for 2 CPU cores.

configs/Baselines/retinanet_shapes.py (ResNet-18 from scratch, 64-channel FPN and head, 4 images per
batch) with the loss keys of retinanet_ghm_R_50_FPN_1x.py.
"""
from ghm import RetinaNetGHM

from ..Baselines.retinanet_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetGHM
del model.focal_loss_alpha
del model.focal_loss_gamma
model.ghm_mode = "paper"
model.ghm_c_bins = 30
model.ghm_c_momentum = 0.75
model.ghm_c_loss_weight = 1.0
model.box_loss = "ghm_r"
model.ghm_r_mu = 0.02
model.ghm_r_bins = 10
model.ghm_r_momentum = 0.7
model.ghm_r_loss_weight = 10.0
model.ghm_all_reduce = False

train.output_dir = "./output/retinanet_ghm_shapes"

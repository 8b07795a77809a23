"""Focal-loss RetinaNet, ResNet-101-FPN, 1x, at the paper's scale [1000, 600]: the R101 baseline row of
Table 6 (37.0 AP; RetinaNet-Conf R101 38.0). retinanet_R_50_FPN_1x_600.py with the deeper backbone.
"""

from .retinanet_R_50_FPN_1x_600 import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/retinanet_R_101_FPN_1x_600"

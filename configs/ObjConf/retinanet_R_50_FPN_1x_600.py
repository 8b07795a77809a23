"""Focal-loss RetinaNet, ResNet-50-FPN, 1x, at the paper's scale [1000, 600]: the baseline row of
Tables 1 and 6 (35.3 AP). Same recipe as retinanet_conf_R_50_FPN_1x.py without the confidence branch.
"""

from ..Baselines.retinanet_R_50_FPN_1x import lr_multiplier, model, optimizer, train
from ..common.coco_600 import dataloader

train.trained_checkpoint = ""  # the published detectron2 weights were trained at 800px
train.output_dir = "./output/retinanet_R_50_FPN_1x_600"

"""RetinaNet-ResObj (T=2), ResNet-101-FPN, 1x, 800px. (The paper's R-101 row of Table 3, 40.1 AP, used
scale jitter and a 1.5x longer schedule; this config is the plain 1x recipe.)"""
from .retinanet_resobj_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/retinanet_resobj_R_101_FPN_1x"

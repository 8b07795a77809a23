"""FasterRCNN-ResObj, ResNet-101-FPN, 1x, 800px (paper Table 3: 40.4 AP on test-dev; sampling 39.3)."""
from .faster_rcnn_resobj_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/faster_rcnn_resobj_R_101_FPN_1x"

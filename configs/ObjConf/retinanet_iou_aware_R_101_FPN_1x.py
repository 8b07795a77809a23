"""IoU-aware RetinaNet, ResNet-101-FPN, 1x, [1000, 600] (Table 6: 37.9 AP; RetinaNet-Conf R101 38.0).
retinanet_iou_aware_R_50_FPN_1x.py with the deeper backbone: IoU branch on the box tower, alpha 0.5.
"""

from .retinanet_iou_aware_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/retinanet_iou_aware_R_101_FPN_1x"

"""FasterRCNN-ResObj, ResNet-101-FPN, 1x, 800px (paper Table 3: 40.4 AP on test-dev; sampling 39.3).

The recipe of the R50 config (one scale, 800; 1x): this row of Table 3 has no "*" (no jitter, no longer
schedule), as maskrcnn-benchmark's e2e_faster_rcnn_R_101_FPN_1x.yaml (footnote 8).
"""
from .faster_rcnn_resobj_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/faster_rcnn_resobj_R_101_FPN_1x"

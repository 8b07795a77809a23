"""YOLOv3 (Darknet-53) on COCO tested at 320x320 (ResObj paper Table 3: 28.2 AP on test-dev).

Darknet trains one multi-scale network and tests it at 320 or 608; this config trains as
yolov3_darknet53_608.py and letterboxes the test images into 320x320.
"""
from .yolov3_darknet53_608 import dataloader, lr_multiplier, model, optimizer, train

model.input_size = 320
dataloader.test.mapper.augmentations[0].short_edge_length = 320
dataloader.test.mapper.augmentations[0].max_size = 320
train.output_dir = "./output/yolov3_darknet53_320"

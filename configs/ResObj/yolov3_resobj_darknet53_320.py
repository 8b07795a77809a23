"""YOLOv3-ResObj (Darknet-53) on COCO tested at 320x320 (ResObj paper Table 3: 28.2 -> 29.3 AP).

Trained as yolov3_resobj_darknet53_608.py (Darknet's multi-scale training), letterboxed into 320x320
at test.
"""
from .yolov3_resobj_darknet53_608 import dataloader, lr_multiplier, model, optimizer, train

model.input_size = 320
dataloader.test.mapper.augmentations[0].short_edge_length = 320
dataloader.test.mapper.augmentations[0].max_size = 320
train.output_dir = "./output/yolov3_resobj_darknet53_320"

"""Ablation recipe of Table 2 (COCO minival, short side 600, long side <= 1000): RetinaNet-ResObj with
T=2 (Table 2c: 35.4 AP). The other 600px ablations derive from this file."""
from ..common.coco_600 import dataloader
from .retinanet_resobj_R_50_FPN_1x import lr_multiplier, model, optimizer, train

model.head.num_steps = 2
train.output_dir = "./output/retinanet_resobj_R_50_FPN_600_T2"

"""Focal-loss RetinaNet small enough to train on 2 CPU cores in minutes, on the shapes dataset.

Derived from the R50 COCO baseline: ResNet-18 trained from scratch with GroupNorm (no ImageNet
weights to download), 64-channel FPN and a 2-conv head, anchors halved (16-256 px) because shapes
images are ~256 px and half of their objects are COCO-small.
"""
from detectron2.layers import ShapeSpec

from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_demo as lr_multiplier
from ..common.shapes import dataloader
from ..common.train import train
from .retinanet_R_50_FPN_1x import model

model.num_classes = 4  # d2imbalance.data.shapes.CATEGORIES
model.backbone.bottom_up.stem.norm = "GN"
model.backbone.bottom_up.stages.depth = 18
model.backbone.bottom_up.stages.norm = "GN"
model.backbone.bottom_up.stages.pop("stride_in_1x1")  # BasicBlock (ResNet-18) takes no such argument
model.backbone.bottom_up.freeze_at = 0  # nothing pretrained to keep frozen
model.backbone.out_channels = 64
model.backbone.norm = "GN"
model.backbone.top_block.in_channels = 512  # res5 of ResNet-18
model.head.input_shape = [ShapeSpec(channels=64)] * 5
model.head.conv_dims = [64, 64]
model.head.norm = "GN"
model.anchor_generator.sizes = [[x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in [16, 32, 64, 128, 256]]

dataloader.train.total_batch_size = 4
optimizer.lr = 0.01
train.lr_reference = dict(lr=0.01, total_batch_size=4)
train.init_checkpoint = ""
train.trained_checkpoint = ""
train.max_iter = 1000
train.eval_period = 500
train.checkpointer.period = 500
train.log_period = 20
train.output_dir = "./output/retinanet_shapes"

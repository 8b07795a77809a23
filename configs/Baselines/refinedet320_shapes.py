"""RefineDet320 small enough to train on 2 CPU cores, on the shapes dataset, from scratch: the RefineDet320
geometry kept whole (320x320 input, ARM maps 40, 20, 10, 5, the 6375 anchors, both modules' matching and
mining, negative anchor filtering, inference), at 1/8 of the width (VGG16 and the TCBs: conv4_3 64,
fc7 128, TCBs 32 channels) with BatchNorm after every VGG16 convolution, and the data, schedule and
optimiser of configs/Baselines/ssd300_shapes.py with the images warped to 320x320.
"""
from detectron2.layers import ShapeSpec

from .refinedet320_voc0712 import model
from .ssd300_shapes import dataloader, lr_multiplier, optimizer, train

model.num_classes = 4  # d2imbalance.data.shapes.CATEGORIES
model.backbone.width_ratio = 0.125
model.backbone.norm = "BN"
model.head.input_shape = [ShapeSpec(channels=64), ShapeSpec(channels=64), ShapeSpec(channels=128), ShapeSpec(channels=64)]
model.head.tcb_channels = 32
dataloader.train.mapper.augmentations[3].shape = (320, 320)  # the Resize
dataloader.test.mapper.augmentations[0].shape = (320, 320)
train.output_dir = "./output/refinedet320_shapes"

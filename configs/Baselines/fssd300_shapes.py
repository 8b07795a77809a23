"""FSSD300 small enough to train on 2 CPU cores, on the shapes dataset, from scratch: configs/Baselines/
ssd300_shapes.py (SSD300's geometry and 8732 boxes, 1/8 width, BatchNorm after every VGG16 convolution,
its data and schedule) with the FSSD network at 1/8 width (fusion 3 x 32 channels, pyramid 64, 64, 32, 32,
32, 32). The fusion keeps its BatchNorm; the pyramid has no norm, as the paper's (its last maps are 3x3
and 1x1).
"""
from ..common.models.fssd import use_fssd
from .ssd300_shapes import dataloader, lr_multiplier, model, optimizer, train

model = use_fssd(model)
train.output_dir = "./output/fssd300_shapes"

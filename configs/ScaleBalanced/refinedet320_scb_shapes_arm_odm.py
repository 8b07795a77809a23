"""The §4.1.1 ablation on shapes: refinedet320_scb_shapes.py with the ODM weighted too."""
from .refinedet320_scb_shapes import dataloader, lr_multiplier, model, optimizer, train

model.weight_odm = True
train.output_dir = "./output/refinedet320_scb_shapes_arm_odm"

"""The §4.1.1 ablation: RefineDet320-SCB with the scale-balanced loss on both the ARM and the ODM (paper:
78.0 mAP on VOC07, against 80.4 with the ARM only and 80.0 without SCB). In the ODM, M counts the refined
anchors matched to each object that negative anchor filtering keeps."""
from .refinedet320_scb_voc0712 import dataloader, lr_multiplier, model, optimizer, train

model.weight_odm = True
train.output_dir = "./output/refinedet320_scb_voc0712_arm_odm"

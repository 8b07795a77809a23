"""RefineDet320-SCB on Pascal VOC 07+12, tested on VOC07 (paper §4.1.1 and Table 2: RefineDet320 80.0 ->
80.4 mAP with the ARM weighted): configs/Baselines/refinedet320_voc0712.py (the authors' Caffe recipe)
with the scale-balanced loss on the ARM only, W = 3(ln M + 1)/M on the classification loss of its
positive anchors, M counted on the ARM's matching. refinedet320_scb_voc0712_arm_odm.py weights the ODM
too (§4.1.1: 78.0 mAP).
"""
from scale_balanced import RefineDetSCB

from ..Baselines.refinedet320_voc0712 import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RefineDetSCB
model.weight_arm = True
model.weight_odm = False  # §4.1.1: weighting the ODM too hurt (80.4 -> 78.0 on VOC07)
model.weighting_form = "scale_balanced"  # Eq. 3
model.scb_alpha = 1.0
model.scb_beta = 3.0
model.weight_box_loss = False  # the authors' code: only the classification loss is weighted
train.output_dir = "./output/refinedet320_scb_voc0712"

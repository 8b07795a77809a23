"""RefineDet512-SCB on Pascal VOC 07+12 (ARM weighted, as refinedet320_scb_voc0712.py):
configs/Baselines/refinedet512_voc0712.py with the scale-balanced loss on the ARM."""
from scale_balanced import RefineDetSCB

from ..Baselines.refinedet512_voc0712 import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RefineDetSCB
model.weight_arm = True
model.weight_odm = False
model.weighting_form = "scale_balanced"
model.scb_alpha = 1.0
model.scb_beta = 3.0
model.weight_box_loss = False
train.output_dir = "./output/refinedet512_scb_voc0712"

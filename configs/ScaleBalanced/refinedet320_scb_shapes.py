"""RefineDet320-SCB on the synthetic shapes dataset (CPU demo): configs/Baselines/refinedet320_shapes.py
with the scale-balanced loss on the ARM only (refinedet320_scb_voc0712.py's setting);
refinedet320_scb_shapes_arm_odm.py weights the ODM too (the §4.1.1 ablation)."""
from scale_balanced import RefineDetSCB

from ..Baselines.refinedet320_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RefineDetSCB
model.weight_arm = True
model.weight_odm = False
model.weighting_form = "scale_balanced"
model.scb_alpha = 1.0
model.scb_beta = 3.0
model.weight_box_loss = False
train.output_dir = "./output/refinedet320_scb_shapes"

"""RetinaNet-SCB on the synthetic shapes dataset (CPU demo): configs/Baselines/retinanet_shapes.py
with the scale-balanced loss of retinanet_scb_R_50_FPN_1x.py, evaluated with COCO AP. The paper's recall
by size of this and the baseline's checkpoints: retinanet_scb_shapes_recall.py.
"""
from scale_balanced import RetinaNetSCB

from ..Baselines.retinanet_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetSCB
model.weighting_form = "scale_balanced"
model.scb_alpha = 1.0
model.scb_beta = 3.0
model.weight_box_loss = False
model.normalize_by = "num_pos"
train.output_dir = "./output/retinanet_scb_shapes"

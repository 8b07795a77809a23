"""RetinaNet-SCB with W applied to the box regression loss as well (Eq. 2 taken literally: the loss
L of each positive anchor, classification and regression, is weighted; the authors' code weights
classification only)."""
from .retinanet_scb_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.weight_box_loss = True
train.output_dir = "./output/retinanet_scb_R_50_FPN_1x_box"

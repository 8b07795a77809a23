"""RetinaNet-Conf R50 1x with the IoU target detached: the confidence loss does not reach the box
branch. The paper is silent; the authors' code (and our default) does not detach."""

from .retinanet_conf_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.detach_iou_target = True
train.output_dir = "./output/retinanet_conf_R_50_FPN_1x_detach"

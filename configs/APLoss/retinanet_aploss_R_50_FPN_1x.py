"""RetinaNet with AP-loss, ResNet-50-FPN, 1x, COCO (Chen et al., CVPR 2019).

configs/Baselines/retinanet_R_50_FPN_1x.py (detectron2's RetinaNet recipe: 16 images, lr 0.01, 90k
iterations, 640-800px jitter) with only the classification loss changed: the focal loss is replaced by
AP-loss over each device's minibatch (interpolated AP, piecewise step of width delta = 1), trained by the
error-driven update. Head, prior, anchors, matcher (IoU 0.5 / 0.4, the band ignored), box loss and test
settings are the baseline's. configs/APLoss/retinanet_aploss_official_R_50_FPN_1x.py has the authors'-code
settings where they differ.
"""
from aploss import RetinaNetAPLoss

from ..Baselines.retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetAPLoss
del model.focal_loss_alpha  # no focal loss: AP-loss is the whole classification loss (§3)
del model.focal_loss_gamma
model.delta = 1.0  # width of the piecewise step function, the paper's best
model.interpolated_ap = True  # Algorithm 1 ranks by interpolated AP
model.box_loss_weight = 1.0  # RetinaNet's box loss, unchanged
model.loss_normalizer_momentum = 0.9  # RetinaNet's positive-count EMA, divides the box loss only

train.trained_checkpoint = ""  # no published weights for this model
train.output_dir = "./output/retinanet_aploss_R_50_FPN_1x"

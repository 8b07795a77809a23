"""RetinaNet with the DR loss, ResNet-50-FPN, 1x on COCO (Qian et al., CVPR 2020; the authors'
dr_R-50-FPN_1x: 37.4 AP minival, 37.6 test-dev).

The baseline's recipe (configs/Baselines/retinanet_R_50_FPN_1x.py: 16 images, lr 0.01, 90k iterations,
detectron2's 640-800 jitter) with the focal loss replaced by the distributional ranking loss, one
ranking per image, with the authors' values. The box loss is RetinaNet's.
"""
import math

from drloss import RetinaNetDRLoss

from ..Baselines.retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetDRLoss
del model.focal_loss_alpha  # no focal loss
del model.focal_loss_gamma
model.pos_lambda = 1.0  # λ_+ (softmin over positive scores)
model.neg_lambda = 0.1 / math.log(3.5)  # λ_-: a negative 0.1 higher in score weighs 3.5x more
model.margin = 0.5  # γ
model.logistic_scale = 6.0  # L of log(1 + exp(Lz)) / L
model.cls_loss_weight = 4.0  # τ, the authors' weight of the DR loss against the box loss
model.scope = "image"  # one ranking per image (the paper); "batch": one per GPU batch (the authors' code)
model.class_grouping = "pooled"  # all classes in one ranking (paper and code); "per_class": one-vs-rest
# The authors' config starts every class score at 0.5 (PRIOR_PROB 0.5): the DR loss is one expectation
# per image, so the many negatives cannot swamp it at initialisation, and sigmoid'(0) = 1/4 is largest.
model.head.prior_prob = 0.5

train.trained_checkpoint = ""  # no detectron2 weights for this model
train.output_dir = "./output/retinanet_drloss_R_50_FPN_1x"

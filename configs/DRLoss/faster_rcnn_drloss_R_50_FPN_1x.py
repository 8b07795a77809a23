"""Faster R-CNN with the DR loss in the ROI head, ResNet-50-FPN, 1x on COCO (Qian et al., CVPR 2020;
the review, papers/001 Table 1, lists "DR Loss, Faster R-CNN, detectron, 37.2, +1.5").

The baseline's recipe (configs/Baselines/faster_rcnn_R_50_FPN_1x.py: 16 images, lr 0.02, 90k
iterations, RPN and 512-RoI sampling unchanged) with the box predictor's softmax cross-entropy replaced
by the distributional ranking loss over per-class sigmoid scores, one ranking per image, with the
authors' RetinaNet values (the paper gives none for Faster R-CNN). Inference uses the same sigmoid
scores. The box loss is detectron2's.
"""
import math

from drloss import DRFastRCNNOutputLayers, DRROIHeads

from ..Baselines.faster_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads._target_ = DRROIHeads  # StandardROIHeads + the check and the hyper-parameter declaration
model.roi_heads.box_predictor._target_ = DRFastRCNNOutputLayers
model.roi_heads.box_predictor.pos_lambda = 1.0  # λ_+ (softmin over positive scores)
model.roi_heads.box_predictor.neg_lambda = 0.1 / math.log(3.5)  # λ_-: a negative 0.1 higher weighs 3.5x more
model.roi_heads.box_predictor.margin = 0.5  # γ
model.roi_heads.box_predictor.logistic_scale = 6.0  # L of log(1 + exp(Lz)) / L
model.roi_heads.box_predictor.cls_loss_weight = 4.0  # τ, the authors' weight of the DR loss (RetinaNet)
model.roi_heads.box_predictor.scope = "image"  # one ranking per image (the paper); "batch": the authors' code
model.roi_heads.box_predictor.class_grouping = "pooled"  # all classes in one ranking; "per_class": one-vs-rest

train.trained_checkpoint = ""  # no detectron2 weights for this model
train.output_dir = "./output/faster_rcnn_drloss_R_50_FPN_1x"

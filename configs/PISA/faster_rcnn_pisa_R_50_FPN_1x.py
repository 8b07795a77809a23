"""PISA for the ROI heads of Faster R-CNN, ResNet-50-FPN, 1x on COCO: ISR + the Classification-Aware
Regression Loss (CARL).

faster_rcnn_isr_R_50_FPN_1x.py with CARL added as a third loss: each positive's box loss weighted by
(b + (1 - b) s)^k of its classification score s, the weights averaging 1, the score keeping its
gradient. PISAROIHeads is ISRROIHeads whose hyper-parameter declaration adds CARL's k and b.
"""
from pisa import PISAROIHeads

from .faster_rcnn_isr_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads._target_ = PISAROIHeads
model.roi_heads.box_predictor.carl = True
model.roi_heads.box_predictor.carl_k = 1.0  # k (authors' config: carl k=1)
model.roi_heads.box_predictor.carl_bias = 0.2  # b (carl bias=0.2)
model.roi_heads.box_predictor.carl_detach_score = False  # the gradient reaches the classifier

train.output_dir = "./output/faster_rcnn_pisa_R_50_FPN_1x"

"""Faster R-CNN with PISA's Importance-based Sample Reweighting (ISR) in the ROI heads, ResNet-50-FPN, 1x
on COCO (Cao et al., "Prime Sample Attention in Object Detection", CVPR 2020). ISR without CARL: the
review's row (papers/001 Table 1).

The baseline's recipe (configs/Baselines/faster_rcnn_R_50_FPN_1x.py: 16 images, lr 0.02, 90k iterations,
512 RoIs per image, 25 % foreground, drawn at random) with the classification loss of each sampled RoI
weighted by its hierarchical local rank: ISR-P by IoU for the positives, ISR-N by score for the
negatives, each set's weights rescaled so that its loss keeps its value. ISR + CARL:
faster_rcnn_pisa_R_50_FPN_1x.py; the authors' code's behaviour: faster_rcnn_pisa_official_R_50_FPN_1x.py.
"""
from pisa import ISRFastRCNNOutputLayers, ISRROIHeads

from ..Baselines.faster_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads._target_ = ISRROIHeads
model.roi_heads.negative_sampling = "random"  # the baseline's random negatives, reweighted by ISR-N
model.roi_heads.box_predictor._target_ = ISRFastRCNNOutputLayers
model.roi_heads.box_predictor.positive_gamma = 2.0  # γ of ISR-P (authors' config: isr k=2)
model.roi_heads.box_predictor.positive_beta = 0.0  # β of ISR-P (isr bias=0)
model.roi_heads.box_predictor.negative_gamma = 0.5  # γ of ISR-N (ScoreHLRSampler k=0.5)
model.roi_heads.box_predictor.negative_beta = 0.0  # β of ISR-N (bias=0)
model.roi_heads.box_predictor.positive_iou = "proposal"  # the RoI's IoU from the matching
model.roi_heads.box_predictor.positive_nms_threshold = None  # IoU-HLR: no NMS among an object's positives
model.roi_heads.box_predictor.negative_nms_threshold = 0.5  # NMS clusters of Score-HLR
model.roi_heads.box_predictor.carl = False  # ISR alone

train.trained_checkpoint = ""  # no detectron2 weights for this model
train.output_dir = "./output/faster_rcnn_isr_R_50_FPN_1x"

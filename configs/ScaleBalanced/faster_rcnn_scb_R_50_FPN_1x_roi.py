"""FasterRCNN-SCB with the second stage weighted too (§4.1 ablation: on RefineDet this hurt, ODM
80.0 -> 78.0 mAP). The ROI heads weight the classification loss of each sampled foreground proposal
by W of its object, M = proposals the ROI matcher made foreground for it."""
from scale_balanced import ScaleBalancedFastRCNNOutputLayers, ScaleBalancedROIHeads

from .faster_rcnn_scb_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads._target_ = ScaleBalancedROIHeads
model.roi_heads.weighting_form = "scale_balanced"
model.roi_heads.scb_alpha = 1.0
model.roi_heads.scb_beta = 3.0
model.roi_heads.count_sampled = False
model.roi_heads.box_predictor._target_ = ScaleBalancedFastRCNNOutputLayers
model.roi_heads.box_predictor.weight_box_loss = False
train.output_dir = "./output/faster_rcnn_scb_R_50_FPN_1x_roi"

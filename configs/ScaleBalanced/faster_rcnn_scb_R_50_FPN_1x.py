"""FasterRCNN-SCB, ResNet-50-FPN, 1x, 800px: the scale-balanced loss on the RPN's positive anchors.

The baseline recipe (configs/Baselines/faster_rcnn_R_50_FPN_1x.py) with detectron2's RPN replaced by
ScaleBalancedRPN: the objectness loss of each sampled positive anchor is multiplied by
W = 3(ln M + 1)/M, M = anchors the matcher made positive for its object. The ROI heads are left
unweighted: §4.1 found weighting the second stage hurt (faster_rcnn_scb_R_50_FPN_1x_roi.py tries it).
Recall by size (Tables 3-9): faster_rcnn_scb_R_50_FPN_1x_recall.py.
"""
from scale_balanced import ScaleBalancedRPN

from ..Baselines.faster_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.proposal_generator._target_ = ScaleBalancedRPN
model.proposal_generator.weighting_form = "scale_balanced"  # Eq. 3
model.proposal_generator.scb_alpha = 1.0  # α (paper: 1)
model.proposal_generator.scb_beta = 3.0  # β (paper: 3)
model.proposal_generator.weight_box_loss = False  # authors' code: classification (objectness) only
model.proposal_generator.normalize_by = "num_sampled"  # RPN's own 256 x #images
model.proposal_generator.count_sampled = False  # M over the matcher's positives, before subsampling

train.trained_checkpoint = ""  # no published weights for this model
train.output_dir = "./output/faster_rcnn_scb_R_50_FPN_1x"

"""FasterRCNN-SCB on the synthetic shapes dataset (CPU demo): configs/Baselines/faster_rcnn_shapes.py
with the ScaleBalancedRPN of faster_rcnn_scb_R_50_FPN_1x.py, evaluated with COCO AP (recall by size:
faster_rcnn_scb_shapes_recall.py)."""
from scale_balanced import ScaleBalancedRPN

from ..Baselines.faster_rcnn_shapes import dataloader, lr_multiplier, model, optimizer, train

model.proposal_generator._target_ = ScaleBalancedRPN
model.proposal_generator.weighting_form = "scale_balanced"
model.proposal_generator.scb_alpha = 1.0
model.proposal_generator.scb_beta = 3.0
model.proposal_generator.weight_box_loss = False
model.proposal_generator.normalize_by = "num_sampled"
model.proposal_generator.count_sampled = False
train.output_dir = "./output/faster_rcnn_scb_shapes"

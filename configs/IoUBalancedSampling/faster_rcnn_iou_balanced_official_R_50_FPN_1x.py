"""IoU-balanced sampling as the authors' code runs it (mmdetection's libra-faster-rcnn_r50-fpn_1x_coco.py:
CombinedSampler, 512 ROIs, 25 % foreground, InstanceBalancedPosSampler, IoUBalancedNegSampler with
floor_thr=-1, floor_fraction=0, num_bins=3), on the COCO 1x recipe.

Where it differs from faster_rcnn_iou_balanced_R_50_FPN_1x.py (the paper's text):
- the bins split [0, highest IoU of the image's proposals), which is 1 because the ground-truth boxes
  are appended as proposals: [0, 1/3), [1/3, 2/3), [2/3, 1), and the top bin never holds a negative;
- the negatives of IoU exactly 0 are kept out of the bins and drawn only when the others run short:
  the code resets its floor_thr=-1 to 0 the first time it samples (the first image with more negatives
  than its quota), and from then on they are its floor;
- positives: about the same number per object (§3.1's "alternative method").
Not copied, because they are the other two Libra R-CNN components or the RPN rather than the sampling:
the balanced feature pyramid, the balanced L1 loss, and the RPN's cap of 5 negatives per positive
(neg_pos_ub=5; detectron2's RPN has no such cap).
"""
from .faster_rcnn_iou_balanced_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.bin_range = "max_iou"
model.roi_heads.floor_thr = 0.0
model.roi_heads.positive_sampling = "instance_balanced"

train.output_dir = "./output/faster_rcnn_iou_balanced_official_R_50_FPN_1x"

"""RetinaNet-SCB, ResNet-50-FPN, 1x, 800px: RetinaNet with the scale-balanced loss (paper Eq. 3).

The baseline recipe (configs/Baselines/retinanet_R_50_FPN_1x.py) with each positive anchor's focal loss
multiplied by W = 3(ln M + 1)/M of its object, M = positive anchors assigned to it (authors' code:
classification only, normalised by the positive count). Recall by size (Tables 3-9):
retinanet_scb_R_50_FPN_1x_recall.py.
"""
from scale_balanced import RetinaNetSCB

from ..Baselines.retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetSCB
model.weighting_form = "scale_balanced"  # Eq. 3; Table 1 forms: const, inv_log, inv_sqrt, inv, log_over_m
model.scb_alpha = 1.0  # α of Eq. 3 (paper: 1 in every experiment)
model.scb_beta = 3.0  # β of Eq. 3 (paper: 3)
model.weight_box_loss = False  # authors' code weights classification only; True = Eq. 2 on both losses
model.normalize_by = "num_pos"  # EMA of #positives as RetinaNet; "weight_sum" = EMA of ΣW

train.trained_checkpoint = ""  # no published weights for this model
train.output_dir = "./output/retinanet_scb_R_50_FPN_1x"

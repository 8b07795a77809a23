"""RetinaNet with GHM-C + GHM-R, ResNet-50-FPN, 1x on COCO (Li et al., AAAI 2019; the paper's best loss
pair: 36.4 AP on minival vs 35.8 for GHM-C + smooth L1 and 35.6 for the focal loss + smooth L1).

configs/Baselines/retinanet_R_50_FPN_1x.py (detectron2's recipe: 16 images, lr 0.01, 90k iterations,
640-800 px jitter) with only the loss changed: the focal loss becomes GHM-C, the L1 box loss GHM-R. The
head keeps RetinaNet's biased initialisation (prior 0.01).
"""
from ghm import RetinaNetGHM

from ..Baselines.retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetGHM
del model.focal_loss_alpha  # no focal loss: plain sigmoid BCE weighted by beta = N / GD(g)
del model.focal_loss_gamma
model.ghm_mode = "paper"  # one histogram per batch, GD = S * M ("official": mmdetection's per-level code)
model.ghm_c_bins = 30  # M (ablation over 5-40: 30 best)
model.ghm_c_momentum = 0.75  # alpha of the EMA of the region counts (authors' config)
model.ghm_c_loss_weight = 1.0  # authors' config
model.box_loss = "ghm_r"  # "smooth_l1": the paper's GHM-C-only row (retinanet_ghm_c_R_50_FPN_1x.py)
model.ghm_r_mu = 0.02  # ASL1's mu ("keeps the same performance as SL1")
model.ghm_r_bins = 10  # authors' config
model.ghm_r_momentum = 0.7  # authors' config
model.ghm_r_loss_weight = 10.0  # authors' config (the paper gives no weight)
model.ghm_all_reduce = False  # region counts per GPU, as the authors' code

train.trained_checkpoint = ""  # no published detectron2 weights for this model
train.output_dir = "./output/retinanet_ghm_R_50_FPN_1x"

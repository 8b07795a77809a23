"""Sampling-Free RetinaNet on the synthetic shapes dataset, small enough for 2 CPU cores.

configs/Baselines/retinanet_shapes.py (ResNet-18 from scratch, 64-channel FPN and head, 4 images per
batch) with the same changes as retinanet_sampling_free_R_50_FPN_1x.py.
"""
from sampling_free import RetinaNetSamplingFree

from ..Baselines.retinanet_shapes import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetSamplingFree
del model.focal_loss_alpha  # no focal loss (Eq. 2)
del model.focal_loss_gamma
del model.head.prior_prob  # the model sets the class bias
model.prior_prob = None  # Eq. 4, measured on the first batch with foreground
model.guided_loss = "paper"  # Eqs. 5-6
model.class_adaptive_threshold = True  # Eq. 7

train.output_dir = "./output/retinanet_sampling_free_shapes"

"""Sampling-Free RetinaNet, ResNet-50-FPN, 1x (Chen et al., arXiv:1909.04868; review Table 1: 36.6 AP).

configs/Baselines/retinanet_R_50_FPN_1x.py (same data, schedule, anchors, matching, normaliser) with the
focal loss replaced by plain sigmoid cross-entropy on every valid anchor and the three Sampling-Free
ingredients. Nothing is tuned: the prior, the loss scale and the thresholds are measured (§3.2).
"""
from sampling_free import RetinaNetSamplingFree

from ..Baselines.retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNetSamplingFree
del model.focal_loss_alpha  # no focal loss: BCE on all valid anchors (RetinaNet-None, Eq. 2)
del model.focal_loss_gamma
del model.head.prior_prob  # the model sets the class bias (prior_prob below)
# Eq. 4: pi = N_f / (N * C), measured on the first training batch with foreground (all GPUs' counts);
# the class bias becomes -log((1 - pi) / pi) before that batch's loss. (COCO: pi ~ 1e-5.)
model.prior_prob = None
model.guided_loss = "paper"  # Eqs. 5-6: loss_cls = stopgrad(L_reg / L_cls) * L_cls on every mini-batch
# Eq. 7: theta_j = (N_f / N) * (N_j / N_f), from the anchor counts of all training batches;
# test_score_thresh (the baseline's 0.05) is then only the fallback of an untrained model.
model.class_adaptive_threshold = True

train.trained_checkpoint = ""  # no published weights for this model
train.output_dir = "./output/retinanet_sampling_free_R_50_FPN_1x"

"""The authors'-code variant (chenjoya/sampling-free@01dfd40, configs/sampling_free/retinanet_R_50_FPN_1x.yaml)
of Sampling-Free RetinaNet, R50-FPN, 1x.

Their code fixes the prior in the config (PRIOR_PROB 1e-5) instead of measuring it, filters every class
at one threshold (INFERENCE_TH 1e-3, NMS 0.5) instead of Eq. 7, and its GuidedLoss measures
r = L_reg / L_cls on the first 100 iterations only, then freezes it, and adds learned uncertainty
weights (loss / 2 sigma^2 + log sigma). The recipe stays the baseline's (their yaml trains at one
800 scale).
"""
from .retinanet_sampling_free_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.prior_prob = 1e-5  # PRIOR_PROB
model.guided_loss = "official"
model.official_warmup_iters = 100  # GuidedLoss(warmup_iters=100)
model.class_adaptive_threshold = False
model.test_score_thresh = 1e-3  # INFERENCE_TH
model.test_nms_thresh = 0.5  # NMS_TH
train.output_dir = "./output/retinanet_sampling_free_official_R_50_FPN_1x"

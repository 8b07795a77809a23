"""GHM-C + GHM-R as the authors' code runs in mmdetection (libuyu/GHM_Detection's
cfg_retinanet_ghm_r50_fpn_1x.py, mmdetection's retinanet_ghm_r50_fpn_1x): one histogram and one loss
per FPN level, summed; GD = S * (non-empty regions); only non-empty regions' EMA updated.

Everything else (data, schedule, anchors, head) is retinanet_ghm_R_50_FPN_1x.py. mmdetection's config
also clips the gradient norm at 35 and trains at one scale (1333x800); neither is applied here.
"""
from .retinanet_ghm_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.ghm_mode = "official"
train.output_dir = "./output/retinanet_ghm_official_R_50_FPN_1x"

"""RetinaNet-ResObj (T=2), ResNet-101-FPN, 800px, with scale jitter and a 1.5x schedule: the recipe of
the paper's R-101 row of Table 3 (40.1 AP; "*": "training detector with scale jitter and for 1.5 longer",
the tricks of [13]).
"""
from .retinanet_resobj_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"

# Scale jitter: the paper gives no range; detectron2's COCO jitter (the shorter side drawn from
# 640-800 in steps of 32, longer side <= 1333), replacing the single 800 of the R50 rows.
dataloader.train.mapper.augmentations[0].short_edge_length = (640, 672, 704, 736, 768, 800)
dataloader.train.mapper.augmentations[0].max_size = 1333
# 1.5x the 1x schedule (90k iterations at 16 images, lr / 10 at 60k and 80k):
train.max_iter = 135000  # 1.5 x 90k
lr_multiplier.scheduler.milestones = [90000, 120000, 135000]  # 1.5 x (60k, 80k); the last is the end
lr_multiplier.warmup_length = 1000 / 135000  # the same 1000 warm-up iterations, as a fraction of 135k
train.output_dir = "./output/retinanet_resobj_R_101_FPN_jitter_1.5x"

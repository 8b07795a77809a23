"""Learning-rate schedules: detectron2's 1x / 3x COCO schedules and a short demo schedule.

All are multipliers of optimizer.lr over the fraction of train.max_iter done, so they stretch with
max_iter overrides.
"""
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from d2imbalance.model_zoo import detectron2_common_config
from d2imbalance.schedules import PolynomialBurnIn

_coco = detectron2_common_config("common/coco_schedule.py")
lr_multiplier_1x = _coco.lr_multiplier_1x  # 90k iterations at 16 images, decay at 60k and 80k
lr_multiplier_2x = _coco.lr_multiplier_2x
lr_multiplier_3x = _coco.lr_multiplier_3x

# Demo: linear warm-up over the first 5% of training, then ×0.1 at 80%.
lr_multiplier_demo = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[8, 10]),
    warmup_length=0.05,
    warmup_method="linear",
    warmup_factor=0.001,
)

# SSD, Caffe recipes at 32 images per batch, no warm-up: VOC (ssd_pascal.py) 120k iterations, x0.1 at 80k
# and 100k; COCO (ssd_coco.py) 400k iterations, x0.1 at 280k and 360k.
lr_multiplier_ssd_voc = L(MultiStepParamScheduler)(
    values=[1.0, 0.1, 0.01], milestones=[80000, 100000], num_updates=120000
)
lr_multiplier_ssd_coco = L(MultiStepParamScheduler)(
    values=[1.0, 0.1, 0.01], milestones=[280000, 360000], num_updates=400000
)

# YOLOv3, yolov3.cfg at 64 images per batch: 500200 iterations, x0.1 at 400k and 450k, after a burn-in
# of 1000 iterations at lr * (iter / 1000)^4 (d2imbalance.schedules.PolynomialBurnIn).
lr_multiplier_yolov3 = L(PolynomialBurnIn)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[400000, 450000], num_updates=500200
    ),
    burn_in=1000,  # iterations, whatever train.max_iter is
    power=4.0,
    max_iter="${train.max_iter}",
)

"""RetinaNet-Conf, ResNet-101-FPN, 2x, [1000, 600] (Table 6: 38.4 AP).

2x = 180k iterations at 16 images, lr ÷10 at 120k and 160k (detectron2's 2x schedule; the paper's
24-epoch MMDetection schedule decays at epochs 16 and 22).
"""

from ..common.schedules import lr_multiplier_2x as lr_multiplier
from .retinanet_conf_R_101_FPN_1x import dataloader, model, optimizer, train

train.max_iter = 180000  # 2 x 90k; lr_multiplier_2x's milestones scale with max_iter
train.output_dir = "./output/retinanet_conf_R_101_FPN_2x"

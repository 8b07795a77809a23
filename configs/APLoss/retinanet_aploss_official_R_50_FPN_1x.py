"""RetinaNet with AP-loss, the authors'-code settings (cccorn/AP-loss@10092a1) on the COCO 1x recipe.

Where lib/model/aploss.py, lib/config.py and train.py differ from retinanet_aploss_R_50_FPN_1x.py:
- box loss: smooth L1 with beta 1 on deltas scaled by (10, 10, 5, 5) (targets divided by 0.1 / 0.2), its
  gradient divided by 4 x the batch's positive count (box_loss_weight 0.25, no EMA);
- learning-rate warm-up over the first 500 iterations, linear from lr / 3;
- test score threshold 0.01 (0.05 in the baseline), NMS 0.5, top 1000 per level, 100 detections.
Not copied, because they are the code's speed or recipe choices rather than AP-loss: 6 anchors per
location (2 scales), 512x512 training crops with SSD-style augmentation, 100 epochs at lr 0.001 for 16
images, and threshold 0 on P7. The AP-loss itself (Algorithm 1 over each GPU's batch) is the same in
both configs.
"""
from .retinanet_aploss_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.box2box_transform.weights = [10.0, 10.0, 5.0, 5.0]  # targets / (0.1, 0.1, 0.2, 0.2)
model.smooth_l1_beta = 1.0
model.box_loss_weight = 0.25  # regression_grads /= (4 * p_num)
model.loss_normalizer_momentum = 0.0  # p_num: this batch's positive count
model.test_score_thresh = 0.01
lr_multiplier.warmup_length = 500 / 90000  # train.py: warmup_step = 500
lr_multiplier.warmup_factor = 1.0 / 3.0  # train.py: warmup_factor = 0.33333333, linear to lr

train.output_dir = "./output/retinanet_aploss_official_R_50_FPN_1x"

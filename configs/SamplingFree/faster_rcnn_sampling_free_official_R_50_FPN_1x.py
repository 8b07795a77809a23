"""The authors'-code variant (chenjoya/sampling-free@5f133dc, modeling/rpn/loss.py,
roi_heads/box_head/{loss,inference}.py) of Sampling-Free Faster R-CNN, R50-FPN, 1x.

Where it differs from faster_rcnn_sampling_free_R_50_FPN_1x.py (the paper): the ROI classifier keeps its
zero bias (the code initialises only the RPN's objectness bias), the ROI classification loss is
2 * r * L_cls ("classification_scale 2.0 for rcnn"), and every class is filtered at one threshold of 1e-4
instead of Eq. 7. The RPN is the same (prior measured, r per mini-batch). The recipe stays the baseline's.
"""
from .faster_rcnn_sampling_free_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.proposal_generator.guided_loss = "official"  # the same as "paper" in the RPN
model.roi_heads.box_predictor.optimal_bias_init = False  # FPNPredictor's bias 0
model.roi_heads.box_predictor.guided_loss = "official"  # 2 * r * L_cls
model.roi_heads.box_predictor.class_adaptive_threshold = False
model.roi_heads.box_predictor.test_score_thresh = 1e-4  # score_thresh = 0.0001 under SAMPLING_FREE_ON

train.output_dir = "./output/faster_rcnn_sampling_free_official_R_50_FPN_1x"

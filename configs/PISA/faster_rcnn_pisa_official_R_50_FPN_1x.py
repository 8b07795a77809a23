"""PISA as the authors' code runs it (mmdetection's configs/pisa/faster-rcnn_r50-fpn-pisa_1x_coco.py:
PISARoIHead with isr=dict(k=2, bias=0), carl=dict(k=1, bias=0.2), ScoreHLRSampler with num=512,
pos_fraction=0.25, k=0.5, bias=0), on the COCO 1x recipe.

Where it differs from faster_rcnn_pisa_R_50_FPN_1x.py:
- the positives are ranked by the IoU of the box regressed from them, not of the RoI itself (isr_p);
- the negatives are not drawn at random and reweighted: the box head scores every negative of the
  image in an extra forward pass, those above 0.05 are ranked by Score-HLR and the top ones drawn, the
  rest of the quota at random from those below (ScoreHLRSampler).
Not copied, because they change the baseline's recipe rather than ISR or CARL: the smooth-L1 box loss
with beta 1 (detectron2's baseline trains with L1) and 2000 RPN proposals per image in training and
testing (detectron2's baseline keeps 1000).
"""
from .faster_rcnn_pisa_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.negative_sampling = "score_hlr"
model.roi_heads.negative_score_threshold = 0.05  # ScoreHLRSampler score_thr
model.roi_heads.box_predictor.positive_iou = "regressed"

train.output_dir = "./output/faster_rcnn_pisa_official_R_50_FPN_1x"

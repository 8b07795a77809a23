"""RetinaNet-SCB normalised by the (EMA of the) sum of the positive anchors' weights instead of their
number: W redistributes the positive loss between objects without raising its total."""
from .retinanet_scb_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.normalize_by = "weight_sum"
train.output_dir = "./output/retinanet_scb_R_50_FPN_1x_wsum"

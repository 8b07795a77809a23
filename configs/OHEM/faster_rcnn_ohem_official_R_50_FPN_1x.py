"""OHEM as the authors' code selects (abhi2610/ohem, lib/roi_data_layer: OHEMDataLayer and
get_ohem_minibatch with TRAIN.OHEM_USE_NMS = True, OHEM_NMS_THRESH = 0.7), on the COCO 1x recipe.

Where it differs from faster_rcnn_ohem_R_50_FPN_1x.py (the paper's text): the NMS among the RoIs runs
within each label (each class, and the background) of each image, so a background RoI never removes a
foreground one or the reverse. Like the paper, the code ranks by classification plus box loss and keeps
the hardest with no foreground ratio. Its batch, 64 RoIs per image (B = 128 over N = 2 images, Fast
R-CNN's), is its detector's standard batch, as 512 is detectron2's; pass
model.roi_heads.batch_size_per_image=64 to use it.
"""
from .faster_rcnn_ohem_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.selection_nms_per_label = True

train.output_dir = "./output/faster_rcnn_ohem_official_R_50_FPN_1x"

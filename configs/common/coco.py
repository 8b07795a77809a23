"""COCO 2017 detection dataloader: detectron2's model-zoo common/data/coco.py without instance masks.

Images without annotations are kept as negatives (detectron2's default drops them).
"""
from d2imbalance.model_zoo import detectron2_common_config

dataloader = detectron2_common_config("common/data/coco.py").dataloader
dataloader.train.mapper.use_instance_mask = False
dataloader.train.dataset.filter_empty = False

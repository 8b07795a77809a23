"""COCO dataloader at the 600px ablation scale used by the papers (short side 600, long side ≤ 1000)."""
from .coco import dataloader

dataloader.train.mapper.augmentations[0].short_edge_length = (600,)
dataloader.train.mapper.augmentations[0].max_size = 1000
dataloader.test.mapper.augmentations[0].short_edge_length = 600
dataloader.test.mapper.augmentations[0].max_size = 1000

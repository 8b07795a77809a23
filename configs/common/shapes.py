"""Dataloader for the embedded synthetic "shapes" dataset (d2imbalance.data.shapes).

shapes_train / shapes_val are generated on first use into $D2IMBALANCE_CACHE (~/.cache/d2imbalance)
and registered in every process by d2imbalance.data.datasets. Images are 224-288 px, so the
augmentations keep that scale.
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .coco import dataloader

dataloader.train.dataset.names = "shapes_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(224, 256, 288), sample_style="choice", max_size=384),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 1  # the demos target 2-core machines

dataloader.test.dataset.names = "shapes_val"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=256, max_size=384)]
dataloader.test.num_workers = 1

"""SSD300's data mappers: the SSD training augmentation (d2imbalance.data.ssd_augmentation) and a
300x300 warp for testing. Images are read as RGB, matching configs/common/models/ssd.py.

Train: photometric distortion, zoom out (p = 0.5, up to 4x, canvas filled with the model's mean pixel),
min-IoU random crop keeping the boxes whose centre stays inside, warp to 300x300, horizontal flip.
SSD512 configs change the two Resize shapes.
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper

from d2imbalance.data.ssd_augmentation import SSDDatasetMapper, SSDMinIoURandomCrop, SSDPhotometricDistortion, ZoomOut

train_mapper = L(SSDDatasetMapper)(
    is_train=True,
    augmentations=[
        L(SSDPhotometricDistortion)(),
        L(T.RandomApply)(tfm_or_aug=L(ZoomOut)(max_ratio=4.0, fill="${model.pixel_mean}"), prob=0.5),
        L(SSDMinIoURandomCrop)(min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
        L(T.Resize)(shape=(300, 300)),
        L(T.RandomFlip)(horizontal=True),
    ],
    image_format="RGB",
)

test_mapper = L(DatasetMapper)(
    is_train=False,
    augmentations=[L(T.Resize)(shape=(300, 300))],
    image_format="RGB",
)

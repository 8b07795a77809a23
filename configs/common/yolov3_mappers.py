"""YOLOv3's data mappers: Darknet's training augmentation (d2imbalance.data.darknet_augmentation) on a
608x608 canvas, and the letterbox resize for testing. Images are read as RGB.

Train: jitter 0.3 of the aspect ratio, the longer side fitted to the canvas, placed at random on 0.5
grey (cropping what falls outside), HSV distortion (hue 0.1, saturation and exposure 1.5), horizontal
flip. The scale is that of pjreddie/darknet master from August 2018 on (``float scale = 1``), the code
the ResObj paper ran in 2019; the YOLOv3 release (March 2018) drew it from 0.25-2:
``scale_range=(0.25, 2.0)`` restores that.
The model resizes each batch to the multi-scale size of its iteration. Test: the longer side resized to
the test size, the model pads to a square.
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper

from d2imbalance.data.darknet_augmentation import DarknetHSVDistortion, DarknetJitterCrop

train_mapper = L(DatasetMapper)(
    is_train=True,
    augmentations=[
        L(DarknetJitterCrop)(size=608, jitter=0.3, scale_range=(1.0, 1.0), fill=127.5),
        L(DarknetHSVDistortion)(hue=0.1, saturation=1.5, exposure=1.5),
        L(T.RandomFlip)(horizontal=True),
    ],
    image_format="RGB",
)

test_mapper = L(DatasetMapper)(
    is_train=False,
    augmentations=[L(T.ResizeShortestEdge)(short_edge_length=608, max_size=608)],
    image_format="RGB",
)

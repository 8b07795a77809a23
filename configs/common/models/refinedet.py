"""RefineDet320 on the reduced VGG16 for the 20 VOC classes (Zhang et al., CVPR 2018): the network,
anchors and test settings of the authors' Caffe recipe (sfzhang15/RefineDet,
examples/refinedet/VGG16_VOC2007_320.py).

ARM on conv4_3 (L2Norm 10), conv5_3 (L2Norm 8), fc7 and conv6_2 (40, 20, 10, 5 at 320); one anchor size
per map, 4 x its stride (32, 64, 128, 256 px), ratios 1, 2, 1/2 (3 per location, no max size, not
clipped): 6375 anchors. TCBs of 256 channels, ODM on their maps. Matching IoU 0.5 plus each object's
best anchor in both modules (the ODM on the refined anchors), 3:1 mining in both, variances (0.1, 0.2),
negative anchor filtering at ARM background > 0.99. Inference: score > 0.01, top 1000 per class, NMS
0.45, 500 per image. RGB with torchvision's ImageNet mean and std, as the SSD configs.
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform

from d2imbalance.modeling import SSD_BOX_WEIGHTS, RefineDet, RefineDetHead, RefineDetVGG, SSDAnchorGenerator

model = L(RefineDet)(
    backbone=L(RefineDetVGG)(input_size=320),
    head=L(RefineDetHead)(
        # RefineDetVGG's output channels: conv4_3, conv5_3, fc7, conv6_2
        input_shape=[ShapeSpec(channels=512), ShapeSpec(channels=512), ShapeSpec(channels=1024), ShapeSpec(channels=512)],
        num_classes="${..num_classes}",
        num_anchors=[3, 3, 3, 3],  # 1 + 2 * len(aspect_ratios): no max size
        tcb_channels=256,
    ),
    anchor_generator=L(SSDAnchorGenerator)(
        min_sizes=[32, 64, 128, 256],
        max_sizes=None,
        aspect_ratios=[[2], [2], [2], [2]],
        strides=[8, 16, 32, 64],
    ),
    box2box_transform=L(Box2BoxTransform)(weights=SSD_BOX_WEIGHTS),
    num_classes=20,
    iou_threshold=0.5,
    neg_pos_ratio=3.0,
    negative_anchor_threshold=0.99,
    test_score_thresh=0.01,
    test_topk_per_class=1000,
    test_nms_thresh=0.45,
    max_detections_per_image=500,
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    input_format="RGB",
)

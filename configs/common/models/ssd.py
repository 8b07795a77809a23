"""SSD300 on SSD's reduced VGG16 for the 20 VOC classes: the network and default boxes of the Caffe
recipe (weiliu89/caffe, branch ssd, examples/ssd/ssd_pascal.py; Liu et al., ECCV 2016).

Default boxes on conv4_3, fc7, conv6_2 .. conv9_2 (38, 19, 10, 5, 3, 1): s_k from 20% to 90% of 300
with conv4_3 at 10% -> min sizes 30, 60, 111, 162, 213, 264 and max sizes 60, 111, ..., 315 px; aspect
ratios {2} on the first and last two maps and {2, 3} on the others: 8732 boxes, not clipped.
Matching IoU 0.5 plus each object's best box, 3:1 hard negatives, variances (0.1, 0.2); inference
score > 0.01, top 400 per class, NMS 0.45, 200 per image. Images are RGB with torchvision's ImageNet
mean and std, the inputs the converted torchvision VGG16 weights expect.
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform

from d2imbalance.modeling import SSD, SSD_BOX_WEIGHTS, SSDVGG, SSDAnchorGenerator, SSDHead, ssd_prior_sizes

_min_sizes, _max_sizes = ssd_prior_sizes(300, num_maps=6, min_ratio=20, max_ratio=90, first_ratios=(10, 20))

model = L(SSD)(
    backbone=L(SSDVGG)(input_size=300),
    head=L(SSDHead)(
        # SSDVGG's output channels: conv4_3, fc7, conv6_2, conv7_2, conv8_2, conv9_2
        input_shape=[
            ShapeSpec(channels=512),
            ShapeSpec(channels=1024),
            ShapeSpec(channels=512),
            ShapeSpec(channels=256),
            ShapeSpec(channels=256),
            ShapeSpec(channels=256),
        ],
        num_classes="${..num_classes}",
        num_anchors=[4, 6, 6, 6, 4, 4],  # 2 + 2 * len(aspect_ratios) per map
    ),
    anchor_generator=L(SSDAnchorGenerator)(
        min_sizes=_min_sizes,
        max_sizes=_max_sizes,
        aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        strides=[8, 16, 32, 64, 100, 300],  # the recipe's steps: boxes of the 3x3 and 1x1 maps centred
    ),
    box2box_transform=L(Box2BoxTransform)(weights=SSD_BOX_WEIGHTS),  # 1 / variances (0.1, 0.1, 0.2, 0.2)
    num_classes=20,
    iou_threshold=0.5,
    neg_pos_ratio=3.0,
    test_score_thresh=0.01,
    test_topk_per_class=400,
    test_nms_thresh=0.45,
    max_detections_per_image=200,
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    input_format="RGB",
)

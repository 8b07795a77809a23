"""YOLOv3 on Darknet-53 for the 80 COCO classes: yolov3.cfg (pjreddie/darknet) as a detectron2 model.

Nine COCO anchors (10x13 ... 373x326 px) in three masks, ignore_thresh 0.7, multi-scale training
(320 ... 608 every 10 iterations, 608 for the last 200), test images letterboxed into 608x608 with 0.5
grey; detections above 0.005 (objectness, then objectness x class), class-wise NMS 0.45, as Darknet's
COCO validation. RGB inputs divided by 255. See d2imbalance/modeling/yolov3.py.
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from d2imbalance.data.darknet_augmentation import DARKNET_MULTISCALE_SIZES, MultiScaleSchedule
from d2imbalance.modeling import YOLOV3_ANCHOR_MASKS, YOLOV3_COCO_ANCHORS, Darknet53, YOLOv3, YOLOv3Head

model = L(YOLOv3)(
    backbone=L(Darknet53)(out_features=("dark3", "dark4", "dark5")),
    head=L(YOLOv3Head)(
        input_shape=[ShapeSpec(channels=256), ShapeSpec(channels=512), ShapeSpec(channels=1024)],  # dark3-5
        num_classes="${..num_classes}",
        num_anchors=3,
    ),
    num_classes=80,
    anchors=YOLOV3_COCO_ANCHORS,
    anchor_masks=YOLOV3_ANCHOR_MASKS,
    ignore_thresh=0.7,
    input_size=608,
    pad_value=127.5,
    multiscale=L(MultiScaleSchedule)(
        sizes=DARKNET_MULTISCALE_SIZES, period=10, seed=0, final_size=608, final_iters=200, max_iter="${train.max_iter}"
    ),
    test_score_thresh=0.005,
    test_topk_candidates=1000,
    test_nms_thresh=0.45,
    max_detections_per_image=100,
    pixel_mean=[0.0, 0.0, 0.0],
    pixel_std=[255.0, 255.0, 255.0],
    input_format="RGB",
)

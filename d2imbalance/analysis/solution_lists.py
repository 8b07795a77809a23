"""The comparisons shipped with the repository: every solution with the baseline it is derived from.

Each :class:`~d2imbalance.analysis.comparison.Entry` names a method config and its own baseline config
(the config the method's file imports, so the two differ only in the method's keys). Config names are
relative to ``configs/``, as ``train_net.py --config-file`` takes them. Shipped as Python data (not as
files under configs/) so that they are importable, checked by the tests, and never mistaken for
a training config; a comparison of other configs is a JSON file given to ``--entries`` (see
:func:`~d2imbalance.analysis.comparison.load_entries`).

Pure Python; nothing here imports detectron2.
"""
from typing import Dict, Tuple

from .comparison import Entry

__all__ = ["COMPARISONS", "DESCRIPTIONS"]

_RETINANET = dict(detector="RetinaNet", baseline_label="RetinaNet (focal loss)")
_FASTER_RCNN = dict(detector="Faster R-CNN", baseline_label="Faster R-CNN (biased sampling)")

# YOLOv3 tests at most model.input_size: at the benchmark's image size, without the multi-scale
# resizing of training batches (which would time another size than the one given).
_YOLO_BENCHMARK = {"overrides": ("model.multiscale=null", "model.input_size={image_size}")}

_ONE_STAGE_SHAPES: Tuple[Entry, ...] = tuple(
    Entry(label, config, "Baselines/retinanet_shapes.py", **_RETINANET)
    for label, config in (
        ("RetinaNet-ResObj", "ResObj/retinanet_resobj_shapes.py"),
        ("RetinaNet-SCB", "ScaleBalanced/retinanet_scb_shapes.py"),
        ("RetinaNet-Conf", "ObjConf/retinanet_conf_shapes.py"),
        ("IoU-aware RetinaNet", "ObjConf/retinanet_iou_aware_shapes.py"),
        ("GHM (GHM-C + GHM-R)", "GHM/retinanet_ghm_shapes.py"),
        ("AP-Loss", "APLoss/retinanet_aploss_shapes.py"),
        ("DR Loss", "DRLoss/retinanet_drloss_shapes.py"),
        ("Sampling-Free", "SamplingFree/retinanet_sampling_free_shapes.py"),
    )
)

# The solutions that the review's Table 1 lists on Faster R-CNN (its DR Loss row among them;
# projects/DRLoss/README.md says why that row is most likely RetinaNet's). The seed papers' Faster R-CNN
# variants, which the review does not list, are in "shapes".
_TWO_STAGE_SHAPES: Tuple[Entry, ...] = tuple(
    Entry(label, config, "Baselines/faster_rcnn_shapes.py", **_FASTER_RCNN)
    for label, config in (
        ("OHEM", "OHEM/faster_rcnn_ohem_shapes.py"),
        ("IoU-balanced sampling", "IoUBalancedSampling/faster_rcnn_iou_balanced_shapes.py"),
        ("ISR (PISA)", "PISA/faster_rcnn_isr_shapes.py"),
        ("DR Loss (ROI head)", "DRLoss/faster_rcnn_drloss_shapes.py"),
        ("Sampling-Free (RPN + ROI)", "SamplingFree/faster_rcnn_sampling_free_shapes.py"),
    )
)

_OTHER_SHAPES: Tuple[Entry, ...] = (
    Entry("FasterRCNN-ResObj", "ResObj/faster_rcnn_resobj_shapes.py", "Baselines/faster_rcnn_shapes.py", **_FASTER_RCNN),
    Entry("FasterRCNN-SCB", "ScaleBalanced/faster_rcnn_scb_shapes.py", "Baselines/faster_rcnn_shapes.py", **_FASTER_RCNN),
    Entry("YOLOv3-ResObj", "ResObj/yolov3_resobj_shapes.py", "Baselines/yolov3_shapes.py",
          detector="YOLOv3", baseline_label="YOLOv3", benchmark=_YOLO_BENCHMARK),
    # The SSD family's benchmark runs at each network's own input size.
    Entry("SSD300-SCB", "ScaleBalanced/ssd300_scb_shapes.py", "Baselines/ssd300_shapes.py",
          detector="SSD300", baseline_label="SSD300 (hard negative mining)", benchmark={"image_size": 300}),
    Entry("FSSD300-SCB", "ScaleBalanced/fssd300_scb_shapes.py", "Baselines/fssd300_shapes.py",
          detector="FSSD300", baseline_label="FSSD300 (hard negative mining)", benchmark={"image_size": 300}),
    Entry("DSSD321-SCB", "ScaleBalanced/dssd321_scb_shapes.py", "Baselines/dssd321_shapes.py",
          detector="DSSD321", baseline_label="DSSD321 (hard negative mining)", benchmark={"image_size": 321}),
    Entry("RefineDet320-SCB (ARM)", "ScaleBalanced/refinedet320_scb_shapes.py", "Baselines/refinedet320_shapes.py",
          detector="RefineDet320", baseline_label="RefineDet320 (mining, anchor filtering)",
          benchmark={"image_size": 320}),
)

_COCO_600 = dict(detector="RetinaNet", baseline_label="RetinaNet (focal loss, 600 px)")

_COCO_R50_FPN_1X: Tuple[Entry, ...] = (
    Entry("RetinaNet-ResObj", "ResObj/retinanet_resobj_R_50_FPN_1x.py", "Baselines/retinanet_R_50_FPN_1x.py", **_RETINANET),
    Entry("RetinaNet-SCB", "ScaleBalanced/retinanet_scb_R_50_FPN_1x.py", "Baselines/retinanet_R_50_FPN_1x.py", **_RETINANET),
    Entry("GHM (GHM-C + GHM-R)", "GHM/retinanet_ghm_R_50_FPN_1x.py", "Baselines/retinanet_R_50_FPN_1x.py", **_RETINANET),
    Entry("AP-Loss", "APLoss/retinanet_aploss_R_50_FPN_1x.py", "Baselines/retinanet_R_50_FPN_1x.py", **_RETINANET),
    Entry("DR Loss", "DRLoss/retinanet_drloss_R_50_FPN_1x.py", "Baselines/retinanet_R_50_FPN_1x.py", **_RETINANET),
    Entry("Sampling-Free", "SamplingFree/retinanet_sampling_free_R_50_FPN_1x.py", "Baselines/retinanet_R_50_FPN_1x.py",
          **_RETINANET),
    # RetinaNet-Conf's recipe trains at the paper's 600 px; its baseline is the same recipe without the branch.
    Entry("RetinaNet-Conf", "ObjConf/retinanet_conf_R_50_FPN_1x.py", "ObjConf/retinanet_R_50_FPN_1x_600.py", **_COCO_600),
    Entry("IoU-aware RetinaNet", "ObjConf/retinanet_iou_aware_R_50_FPN_1x.py", "ObjConf/retinanet_R_50_FPN_1x_600.py",
          **_COCO_600),
    Entry("FasterRCNN-ResObj", "ResObj/faster_rcnn_resobj_R_50_FPN_1x.py", "Baselines/faster_rcnn_R_50_FPN_1x.py",
          **_FASTER_RCNN),
    Entry("FasterRCNN-SCB", "ScaleBalanced/faster_rcnn_scb_R_50_FPN_1x.py", "Baselines/faster_rcnn_R_50_FPN_1x.py",
          **_FASTER_RCNN),
    Entry("IoU-balanced sampling", "IoUBalancedSampling/faster_rcnn_iou_balanced_R_50_FPN_1x.py",
          "Baselines/faster_rcnn_R_50_FPN_1x.py", **_FASTER_RCNN),
    Entry("OHEM", "OHEM/faster_rcnn_ohem_R_50_FPN_1x.py", "Baselines/faster_rcnn_R_50_FPN_1x.py", **_FASTER_RCNN),
    Entry("ISR (PISA)", "PISA/faster_rcnn_isr_R_50_FPN_1x.py", "Baselines/faster_rcnn_R_50_FPN_1x.py", **_FASTER_RCNN),
    Entry("DR Loss (ROI head)", "DRLoss/faster_rcnn_drloss_R_50_FPN_1x.py", "Baselines/faster_rcnn_R_50_FPN_1x.py",
          **_FASTER_RCNN),
    Entry("Sampling-Free (RPN + ROI)", "SamplingFree/faster_rcnn_sampling_free_R_50_FPN_1x.py",
          "Baselines/faster_rcnn_R_50_FPN_1x.py", **_FASTER_RCNN),
)

#: name -> entries, in table order (rows are grouped by baseline, in order of first appearance).
COMPARISONS: Dict[str, Tuple[Entry, ...]] = {
    "one_stage_shapes": _ONE_STAGE_SHAPES,
    "two_stage_shapes": _TWO_STAGE_SHAPES,
    "shapes": _ONE_STAGE_SHAPES + _TWO_STAGE_SHAPES + _OTHER_SHAPES,
    "coco_r50_fpn_1x": _COCO_R50_FPN_1X,
}

DESCRIPTIONS: Dict[str, str] = {
    "one_stage_shapes": "the RetinaNet-based solutions on the shapes dataset, against Baselines/retinanet_shapes.py",
    "two_stage_shapes": "the review's Faster R-CNN solutions on the shapes dataset, against Baselines/faster_rcnn_shapes.py",
    "shapes": "every solution's shapes config against its baseline's shapes config (CPU demo)",
    "coco_r50_fpn_1x": "the COCO R50-FPN 1x configs against their baselines (the review's Table 1 setting)",
}

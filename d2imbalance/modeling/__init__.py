"""Vanilla detectors that detectron2 lacks, built from its parts: SSD300 / SSD512 (Liu et al., ECCV 2016)
on SSD's reduced VGG16, FSSD300 / FSSD512 (Li & Zhou 2017): SSD on :class:`.fssd.FSSDVGG`, DSSD321 /
DSSD513 (Fu et al. 2017): SSD on :class:`.dssd.DSSDResNet` with :class:`.dssd.DSSDHead`, and
RefineDet320 / RefineDet512 (Zhang et al., CVPR 2018): :class:`.refinedet.RefineDet`, and YOLOv3
(Redmon & Farhadi 2018): :class:`.yolov3.YOLOv3` on :class:`.darknet.Darknet53`. They know no
imbalance method; the projects subclass them, as they subclass :class:`.retinanet.FocalFreeRetinaNet`
(detectron2's RetinaNet without its focal loss) for the methods that replace that loss.

:mod:`.ssd_ops` (priors, matching, hard negative mining, loss, candidate selection) and
:mod:`.proposal_labels` (the ROI heads' proposal labels, and the no-sampling rule) are pure torch and
import without detectron2; the modules are imported here only when detectron2 is installed.
Importing :mod:`.vgg` registers the ``torchvision-vgg16://`` checkpoint prefix with detectron2's
PathManager, and :mod:`.darknet_weights` the ``darknet53://`` prefix (Darknet's ``.weights`` files).
"""
from d2imbalance._compat import detectron2_available

from .proposal_labels import label_all_proposals, proposal_class_labels
from .ssd_ops import (
    hard_negative_mask,
    match_priors,
    multibox_loss,
    select_per_class,
    ssd_cell_anchors,
    ssd_prior_sizes,
)

__all__ = [
    "label_all_proposals",
    "proposal_class_labels",
    "hard_negative_mask",
    "match_priors",
    "multibox_loss",
    "select_per_class",
    "ssd_cell_anchors",
    "ssd_prior_sizes",
]

if detectron2_available():
    from d2imbalance._compat import ensure_pkg_resources

    ensure_pkg_resources()
    from .darknet import DARKNET53_STAGES, Darknet53, DarknetConv, DarknetResidual
    from .darknet_weights import (
        Darknet53WeightsHandler,
        DarknetHeader,
        convert_darknet53_weights,
        load_darknet_weights,
        read_darknet_header,
        read_darknet_weights,
        save_darknet_weights,
    )
    from .dssd import (
        CaffeMaxPoolStem,
        DeconvolutionModule,
        DSSDHead,
        DSSDResNet,
        ExtraResBlock,
        PredictionModule,
        deconv_geometry,
    )
    from .fssd import FSSDVGG, FeatureFusion
    from .refinedet import ModuleTargets, RefineDet, RefineDetHead, RefineDetVGG, TransferConnectionBlock
    from .retinanet import FOCAL_LOSS_ARGUMENTS, FocalFreeRetinaNet
    from .roi_box_features import box_head_features
    from .ssd import SSD, SSD_BOX_WEIGHTS, SSDAnchorGenerator, SSDHead
    from .vgg import L2Norm, SSDVGG, TorchvisionVGG16Handler, convert_torchvision_vgg16
    from .yolov3 import YOLOV3_ANCHOR_MASKS, YOLOV3_COCO_ANCHORS, YOLOTargets, YOLOv3, YOLOv3Head, shape_matched_anchors

    __all__ += [
        "box_head_features",
        "FOCAL_LOSS_ARGUMENTS",
        "FocalFreeRetinaNet",
        "DARKNET53_STAGES",
        "Darknet53",
        "DarknetConv",
        "DarknetResidual",
        "Darknet53WeightsHandler",
        "DarknetHeader",
        "convert_darknet53_weights",
        "load_darknet_weights",
        "read_darknet_header",
        "read_darknet_weights",
        "save_darknet_weights",
        "CaffeMaxPoolStem",
        "DeconvolutionModule",
        "DSSDHead",
        "DSSDResNet",
        "ExtraResBlock",
        "PredictionModule",
        "deconv_geometry",
        "FeatureFusion",
        "FSSDVGG",
        "ModuleTargets",
        "RefineDet",
        "RefineDetHead",
        "RefineDetVGG",
        "TransferConnectionBlock",
        "SSD",
        "SSD_BOX_WEIGHTS",
        "SSDAnchorGenerator",
        "SSDHead",
        "L2Norm",
        "SSDVGG",
        "TorchvisionVGG16Handler",
        "convert_torchvision_vgg16",
        "YOLOV3_ANCHOR_MASKS",
        "YOLOV3_COCO_ANCHORS",
        "YOLOTargets",
        "YOLOv3",
        "YOLOv3Head",
        "shape_matched_anchors",
    ]

"""RefineDet (Zhang, Wen, Bian, Lei, Li, "Single-Shot Refinement Neural Network for Object Detection",
CVPR 2018) as an SSD: two inter-connected modules on one backbone.

* **ARM** (anchor refinement module): on conv4_3, conv5_3 (both L2-normalised, scales 10 and 8), fc7 and
  conv6_2 (strides 8, 16, 32, 64), a 3x3 convolution per map predicts for each anchor an objectness pair
  (object, background) and a first box regression. Trained as SSD is, with two classes: SSD's matching
  on the anchors, 3:1 hard negative mining, softmax cross-entropy and smooth-L1, each divided by the
  ARM's number of positives.
* **TCB** (transfer connection blocks, paper Fig. 2): per ARM map, conv3x3 + ReLU, conv3x3 (+ ReLU on the
  top map), plus the 2x2 stride-2 deconvolution of the TCB above, summed, ReLU, conv3x3 + ReLU; 256
  channels.
* **ODM** (object detection module): on the TCB maps, a 3x3 convolution per map predicts K + 1 class
  scores and a box regression **relative to the refined anchors** (the anchors moved by the ARM's
  regression, without gradient). The ODM matches the ground truth to the refined anchors (SSD's rule,
  IoU 0.5 plus each object's best), mines 3:1 and divides by its own number of positives.
* **Negative anchor filtering** (§3, "Negative Anchor Filtering"): an anchor whose ARM background score
  exceeds θ = 0.99 is discarded in training the ODM (neither positive nor negative) and yields no
  detection at inference.

Where the text is silent, the authors' Caffe code (sfzhang15/RefineDet, examples/refinedet/
VGG16_VOC2007_320.py, model_libs.py, the MultiBoxLoss and DetectionOutput layers) is followed: SSD's
reduced VGG16 with pool5 2x2 stride 2 and fc6 3x3 dilation 3 (so fc7 is 10x10 at 320); one extra block
conv6_1 1x1/256, conv6_2 3x3/512 stride 2; one anchor size per map, 4 x its stride (32, 64, 128, 256),
with aspect ratios 1, 2, 1/2 (3 anchors per location, no sqrt(s_k s_k+1) box, not clipped: 6375 anchors
at 320, 16320 at 512); variances (0.1, 0.2) in both modules; Xavier initialisation of the new layers;
inference: score > 0.01, top 1000 per class, class-wise NMS 0.45, 500 detections per image.

Subclasses reweighting the losses (RefineDet-SCB) get each module's matched ground-truth indices from
:meth:`RefineDet.targets` and pass per-anchor weights to :meth:`RefineDet.losses`.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._compat import require_detectron2
from ..analysis.hyperparameters import Hyperparameter
from .ssd import SSD
from .vgg import L2Norm, SSDVGG

require_detectron2("d2imbalance.modeling.refinedet")
from detectron2.layers import ShapeSpec, cat  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

__all__ = ["RefineDet", "RefineDetHead", "RefineDetVGG", "TransferConnectionBlock", "ModuleTargets"]


class RefineDetVGG(SSDVGG):
    """SSD's reduced VGG16 as RefineDet builds it: pool5 2x2 stride 2, fc6 3x3 with dilation 3, and the
    extra block conv6 (1x1/256, 3x3/512 stride 2).

    Outputs (channels at width 1, stride): conv4_3 (L2Norm, init 10) 512, 8; conv5_3 (L2Norm, init 8)
    512, 16; fc7 1024, 32; conv6_2 512, 64. Map sizes 40, 20, 10, 5 at 320 and 64, 32, 16, 8 at 512.
    """

    EXTRA_BLOCKS = {320: ((256, 512, 3, 2, 1),), 512: ((256, 512, 3, 2, 1),)}
    STRIDES = {320: (8, 16, 32, 64), 512: (8, 16, 32, 64)}
    POOL5 = (2, 2, 0)
    FC6_DILATION = 3
    VGG_OUTPUTS = ("conv4_3", "conv5_3", "fc7")

    def __init__(
        self,
        *,
        input_size: int = 320,
        width_ratio: float = 1.0,
        norm: str = "",
        l2norm_scales: Tuple[float, float] = (10.0, 8.0),
    ):
        """
        Args:
            input_size: 320 or 512.
            width_ratio, norm: as :class:`~.vgg.SSDVGG`.
            l2norm_scales: initial L2Norm scales of conv4_3 and conv5_3 (the Caffe recipe: 10 and 8).
        """
        super().__init__(input_size=input_size, width_ratio=width_ratio, norm=norm, l2norm_scale=l2norm_scales[0])
        self.conv5_3_norm = L2Norm(self._out_feature_channels["conv5_3"], l2norm_scales[1])


def _xavier(layer: nn.Module) -> nn.Module:
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class TransferConnectionBlock(nn.Module):
    """One TCB (paper Fig. 2): ARM feature -> conv3x3 + ReLU -> conv3x3; plus, below the top map, the 2x2
    stride-2 deconvolution of the TCB above, then sum and ReLU; then conv3x3 + ReLU. On the top map the
    second convolution has its own ReLU and nothing is added (the Caffe code's TL6_1, TL6_2, P6)."""

    def __init__(self, in_channels: int, channels: int = 256, *, top: bool):
        super().__init__()
        self.conv1 = _xavier(nn.Conv2d(in_channels, channels, 3, padding=1))
        self.conv2 = _xavier(nn.Conv2d(channels, channels, 3, padding=1))
        self.upsample = None if top else _xavier(nn.ConvTranspose2d(channels, channels, 2, stride=2))
        self.out = _xavier(nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: Tensor, upper: Optional[Tensor] = None) -> Tensor:
        x = self.conv2(F.relu(self.conv1(x)))
        if self.upsample is None:
            x = F.relu(x)
        else:
            up = self.upsample(upper)
            if up.shape[-2:] != x.shape[-2:]:
                raise ValueError(
                    f"The TCB's deconvolution doubles {tuple(upper.shape[-2:])} to {tuple(up.shape[-2:])} but "
                    f"the map below is {tuple(x.shape[-2:])}; RefineDet needs each map twice the size of the "
                    "next (inputs of 320 or 512, padded by the backbone's square_size)."
                )
            x = F.relu(x + up)
        return F.relu(self.out(x))


class RefineDetHead(nn.Module):
    """The ARM's objectness and box convolutions on the backbone maps, the TCBs, and the ODM's class and
    box convolutions on the TCB maps (all 3x3, Xavier, zero bias)."""

    def __init__(
        self, *, input_shape: List[ShapeSpec], num_classes: int, num_anchors: Sequence[int], tcb_channels: int = 256
    ):
        """
        Args:
            input_shape: the channels of each ARM map (the backbone's outputs).
            num_classes: K foreground classes of the ODM.
            num_anchors: anchors per location of each map (RefineDet: 3).
            tcb_channels: of the TCBs (paper: 256).
        """
        super().__init__()
        if len(input_shape) != len(num_anchors):
            raise ValueError(f"{len(input_shape)} feature maps in input_shape but {len(num_anchors)} num_anchors.")
        self.num_classes = num_classes
        self.num_anchors = list(num_anchors)
        self.in_channels = channels = [s.channels for s in input_shape]  # the ARM's, checked by SSD
        self.arm_cls_score = nn.ModuleList(_xavier(nn.Conv2d(c, a * 2, 3, padding=1)) for c, a in zip(channels, num_anchors))
        self.arm_bbox_pred = nn.ModuleList(_xavier(nn.Conv2d(c, a * 4, 3, padding=1)) for c, a in zip(channels, num_anchors))
        last = len(channels) - 1
        self.tcb = nn.ModuleList(
            TransferConnectionBlock(c, tcb_channels, top=i == last) for i, c in enumerate(channels)
        )
        self.cls_score = nn.ModuleList(
            _xavier(nn.Conv2d(tcb_channels, a * (num_classes + 1), 3, padding=1)) for a in num_anchors
        )
        self.bbox_pred = nn.ModuleList(_xavier(nn.Conv2d(tcb_channels, a * 4, 3, padding=1)) for a in num_anchors)

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor], List[Tensor], List[Tensor]]:
        """
        Returns:
            arm_logits (per map (N, Ai * 2, Hi, Wi): object, background), arm_deltas (N, Ai * 4, Hi, Wi),
            odm_logits (N, Ai * (K + 1), Hi, Wi: background last), odm_deltas (N, Ai * 4, Hi, Wi).
        """
        arm_logits = [layer(x) for layer, x in zip(self.arm_cls_score, features)]
        arm_deltas = [layer(x) for layer, x in zip(self.arm_bbox_pred, features)]
        transferred: List[Tensor] = [None] * len(features)
        upper = None
        for i in reversed(range(len(features))):  # top-down: each TCB adds the deconvolved map above
            upper = transferred[i] = self.tcb[i](features[i], upper)
        odm_logits = [layer(x) for layer, x in zip(self.cls_score, transferred)]
        odm_deltas = [layer(x) for layer, x in zip(self.bbox_pred, transferred)]
        return arm_logits, arm_deltas, odm_logits, odm_deltas


@dataclass
class ModuleTargets:
    """One module's (ARM or ODM) predictions and training targets for the batch (R anchors per image).

    Attributes:
        priors: (R, 4) the anchors (ARM) or (N, R, 4) the refined anchors (ODM).
        logits: (N, R, C): C = 2 for the ARM (object, background), K + 1 for the ODM.
        deltas: (N, R, 4).
        labels: (N, R) int64, the background index (C - 1) on background.
        gt_boxes: (N, R, 4) the matched ground truth's box (read on positives only).
        matched_idxs: (N, R) int64, the matched ground truth's index, -1 on background.
        ignore: (N, R) bool or None, anchors taking no loss (the ODM's filtered negative anchors).
    """

    priors: Tensor
    logits: Tensor
    deltas: Tensor
    labels: Tensor
    gt_boxes: Tensor
    matched_idxs: Tensor
    ignore: Optional[Tensor] = None


class RefineDet(SSD):
    """RefineDet: :class:`SSD` with an ARM, TCBs and an ODM (see the module docstring)."""

    #: SSD's hard negative mining plus negative anchor filtering (d2imbalance.analysis.hyperparameters).
    HYPERPARAMETERS = SSD.HYPERPARAMETERS + (
        Hyperparameter("negative_anchor_threshold", 0.99, "θ: anchors the ARM calls background above it are dropped (RefineDet §3.2)"),
    )

    def __init__(self, *, negative_anchor_threshold: float = 0.99, **kwargs):
        """
        Args:
            negative_anchor_threshold: θ of negative anchor filtering: an anchor whose ARM background
                probability exceeds it takes no ODM loss and yields no detection (paper: 0.99; 1.0
                turns the filtering off).
            kwargs: :class:`SSD` arguments; ``head`` is a :class:`RefineDetHead`.
        """
        super().__init__(**kwargs)
        if not 0.0 < negative_anchor_threshold <= 1.0:
            raise ValueError(
                f"negative_anchor_threshold={negative_anchor_threshold} must be in (0, 1] (paper: 0.99; 1.0 "
                "disables negative anchor filtering)."
            )
        self.negative_anchor_threshold = negative_anchor_threshold

    def _predictions(self, predictions):
        return self._transpose_dense_predictions(predictions, [2, 4, self.num_classes + 1, 4])

    def refine_anchors(self, anchors: Tensor, arm_deltas: Tensor) -> Tensor:
        """The ARM's boxes: ``anchors`` (R, 4) moved by ``arm_deltas`` (N, R, 4), without gradient."""
        deltas = arm_deltas.detach()
        refined = self.box2box_transform.apply_deltas(deltas.reshape(-1, 4), anchors.repeat(len(deltas), 1))
        return refined.view_as(deltas)

    def filtered_anchors(self, arm_logits: Tensor) -> Tensor:
        """(N, R) bool: the anchors negative anchor filtering removes (ARM background probability > θ)."""
        return arm_logits.detach().softmax(dim=-1)[..., 1] > self.negative_anchor_threshold

    def targets(self, anchors: Tensor, predictions, gt_instances: List[Instances]) -> Tuple[ModuleTargets, ModuleTargets]:
        """Both modules' predictions and targets: the ARM's matching on the anchors (object vs
        background), the ODM's on each image's refined anchors, with the filtered anchors as the ODM's
        ``ignore``. Matching, refinement and filtering carry no gradient."""
        arm_logits, arm_deltas, odm_logits, odm_deltas = (cat(x, dim=1) for x in self._predictions(predictions))
        n = len(gt_instances)
        with torch.no_grad():
            _, arm_boxes, arm_matched = self.label_priors_per_image([Boxes(anchors)] * n, gt_instances)
            refined = self.refine_anchors(anchors, arm_deltas)
            odm_labels, odm_boxes, odm_matched = self.label_priors_per_image([Boxes(r) for r in refined], gt_instances)
            filtered = self.filtered_anchors(arm_logits)
        arm_matched = torch.stack(arm_matched)
        arm = ModuleTargets(
            priors=anchors, logits=arm_logits, deltas=arm_deltas,
            labels=(arm_matched < 0).long(), gt_boxes=torch.stack(arm_boxes), matched_idxs=arm_matched,
        )  # fmt: skip
        odm = ModuleTargets(
            priors=refined, logits=odm_logits, deltas=odm_deltas, labels=torch.stack(odm_labels),
            gt_boxes=torch.stack(odm_boxes), matched_idxs=torch.stack(odm_matched), ignore=filtered,
        )  # fmt: skip
        return arm, odm

    def forward_training(self, images, features, predictions, gt_instances):
        anchors = Boxes.cat(self.anchor_generator(features)).tensor
        arm, odm = self.targets(anchors, predictions, gt_instances)
        return self.losses(arm, odm)

    def losses(
        self,
        arm: ModuleTargets,
        odm: ModuleTargets,
        *,
        arm_cls_weights: Optional[Tensor] = None,
        odm_cls_weights: Optional[Tensor] = None,
        arm_box_weights: Optional[Tensor] = None,
        odm_box_weights: Optional[Tensor] = None,
    ) -> Dict[str, Tensor]:
        """
        Args:
            arm, odm: from :meth:`targets` (their logits and deltas carry the gradient).
            arm_cls_weights, ...: optional (N, R) factors on each anchor's classification / box loss in
                that module (see :func:`~.ssd_ops.multibox_loss`).

        Returns:
            {"loss_arm_cls", "loss_arm_box_reg", "loss_cls", "loss_box_reg"}: each module's losses divided
            by its own number of positives.
        """
        loss_arm_cls, loss_arm_box, arm_pos, arm_neg = self.multibox_loss(
            arm.priors, arm.logits, arm.labels, arm.deltas, arm.gt_boxes,
            cls_weights=arm_cls_weights, box_weights=arm_box_weights,
        )  # fmt: skip
        loss_cls, loss_box, odm_pos, odm_neg = self.multibox_loss(
            odm.priors, odm.logits, odm.labels, odm.deltas, odm.gt_boxes,
            cls_weights=odm_cls_weights, box_weights=odm_box_weights, ignore=odm.ignore,
        )  # fmt: skip
        n = len(odm.labels)
        storage = get_event_storage()
        storage.put_scalar("arm/num_pos_anchors", arm_pos / n)
        storage.put_scalar("arm/num_mined_negatives", arm_neg / n)
        storage.put_scalar("num_pos_anchors", odm_pos / n)
        storage.put_scalar("num_mined_negatives", odm_neg / n)
        storage.put_scalar("odm/filtered_anchor_fraction", float(odm.ignore.float().mean()))
        return {
            "loss_arm_cls": loss_arm_cls,
            "loss_arm_box_reg": loss_arm_box,
            "loss_cls": loss_cls,
            "loss_box_reg": loss_box,
        }

    def forward_inference(self, images, features: List[Tensor], predictions):
        arm_logits, arm_deltas, odm_logits, odm_deltas = (cat(x, dim=1) for x in self._predictions(predictions))
        anchors = Boxes.cat(self.anchor_generator(features)).tensor
        refined = self.refine_anchors(anchors, arm_deltas)
        filtered = self.filtered_anchors(arm_logits)
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            scores = odm_logits[img_idx].softmax(dim=-1)[:, : self.num_classes]
            scores = scores.masked_fill(filtered[img_idx, :, None], 0.0)  # no detection from filtered anchors
            results.append(
                self.inference_single_image(Boxes(refined[img_idx]), scores, odm_deltas[img_idx], image_size)
            )
        return results

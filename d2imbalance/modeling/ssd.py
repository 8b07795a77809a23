"""SSD (Liu et al., ECCV 2016) as a detectron2 dense detector.

``SSD(DenseDetector)`` reuses detectron2's preprocessing, prediction transposition and postprocessing;
it overrides what SSD does differently from RetinaNet: its matching (each ground truth's best prior is
forced positive, :func:`~.ssd_ops.match_priors`), its loss (softmax cross-entropy with 3:1 hard negative
mining and smooth-L1, :func:`~.ssd_ops.multibox_loss`) and its inference (softmax, per class the top 400
priors scoring > 0.01, class-wise NMS 0.45, 200 detections per image, as Caffe's DetectionOutput).

The default boxes are an anchor generator (``SSDAnchorGenerator``), the variances (0.1, 0.1, 0.2, 0.2)
are ``Box2BoxTransform(weights=(10, 10, 5, 5))``. Subclasses that reweight the loss (SSD-SCB) get the
matched ground-truth index of every prior from :meth:`SSD.label_anchors` and pass per-prior weights to
:meth:`SSD.losses`.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .._compat import require_detectron2
from ..analysis.hyperparameters import Hyperparameter
from .ssd_ops import match_priors, multibox_loss, select_per_class, ssd_cell_anchors

require_detectron2("d2imbalance.modeling.ssd")
from detectron2.layers import ShapeSpec, batched_nms, cat  # noqa: E402
from detectron2.modeling import Backbone  # noqa: E402
from detectron2.modeling.anchor_generator import BufferList, DefaultAnchorGenerator  # noqa: E402
from detectron2.modeling.box_regression import Box2BoxTransform  # noqa: E402
from detectron2.modeling.meta_arch.dense_detector import DenseDetector  # noqa: E402
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

__all__ = ["SSD", "SSDAnchorGenerator", "SSDHead", "SSD_BOX_WEIGHTS"]

# SSD encodes (dx, dy) / 0.1 and (dw, dh) / 0.2 (the "variances"); Box2BoxTransform multiplies by weights.
SSD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


class SSDAnchorGenerator(DefaultAnchorGenerator):
    """SSD's default boxes: per feature map, squares of side s_k and sqrt(s_k s_k+1) and boxes of
    aspect ratios a and 1/a of side s_k, centred at (j + offset) * step (:func:`~.ssd_ops.ssd_cell_anchors`).
    Anchors come in detectron2's order (row-major locations, then the boxes of one cell), the order of
    the head's predictions after ``permute_to_N_HWA_K``.
    """

    def __init__(
        self,
        *,
        min_sizes: Sequence[float],
        max_sizes: Optional[Sequence[float]],
        aspect_ratios: Sequence[Sequence[float]],
        strides: Sequence[float],
        offset: float = 0.5,
        clip_size: float = 0.0,
    ):
        """
        Args:
            min_sizes, max_sizes: s_k and s_k+1 of each map in pixels (:func:`~.ssd_ops.ssd_prior_sizes`);
                max_sizes None: no sqrt(s_k s_k+1) box on any map (RefineDet's recipe).
            aspect_ratios: per map, the ratios besides 1 (SSD300: [[2], [2, 3], [2, 3], [2, 3], [2], [2]]).
            strides: per map, the prior step in pixels (SSD300: 8, 16, 32, 64, 100, 300).
            clip_size: > 0 clips the boxes to [0, clip_size]^2 (Caffe's ``clip: true``); 0 keeps them whole,
                as the Caffe VOC/COCO recipes (``clip = False``) and mmdetection do.
        """
        lengths = {len(min_sizes), len(aspect_ratios), len(strides)} | ({len(max_sizes)} if max_sizes is not None else set())
        if len(lengths) != 1:
            raise ValueError(
                f"min_sizes ({len(min_sizes)}), max_sizes ({'None' if max_sizes is None else len(max_sizes)}), "
                f"aspect_ratios ({len(aspect_ratios)}) and strides ({len(strides)}) need one entry per feature map."
            )
        if max_sizes is None:
            sizes = [[lo] for lo in min_sizes]
        else:
            sizes = [[lo, hi] for lo, hi in zip(min_sizes, max_sizes)]
        super().__init__(
            sizes=sizes,
            aspect_ratios=[list(r) for r in aspect_ratios],
            strides=list(strides),
            offset=offset,
        )
        self.clip_size = clip_size

    def _calculate_anchors(self, sizes, aspect_ratios):
        return BufferList(
            [ssd_cell_anchors(size[0], size[1] if len(size) > 1 else None, ratios) for size, ratios in zip(sizes, aspect_ratios)]
        )

    def forward(self, features: List[Tensor]) -> List[Boxes]:
        anchors = super().forward(features)
        if self.clip_size:
            for boxes in anchors:
                boxes.clip((self.clip_size, self.clip_size))
        return anchors


class SSDHead(nn.Module):
    """One 3x3 convolution per map for the class scores (K + 1, background last) and one for the box
    deltas of each default box; Xavier-initialised with zero bias (Caffe's and mmdetection's SSD).
    ``in_channels`` (each map's channels) and ``num_anchors`` are what :class:`SSD` checks against the
    backbone and the anchor generator."""

    def __init__(self, *, input_shape: List[ShapeSpec], num_classes: int, num_anchors: List[int]):
        """
        Args:
            input_shape: the channels of each feature map.
            num_classes: K foreground classes.
            num_anchors: default boxes per location of each map (SSD300: [4, 6, 6, 6, 4, 4]).
        """
        super().__init__()
        if len(input_shape) != len(num_anchors):
            raise ValueError(f"{len(input_shape)} feature maps in input_shape but {len(num_anchors)} num_anchors.")
        self.num_classes = num_classes
        self.num_anchors = list(num_anchors)
        self.in_channels = [s.channels for s in input_shape]
        self.cls_score = nn.ModuleList(
            nn.Conv2d(s.channels, a * (num_classes + 1), 3, padding=1) for s, a in zip(input_shape, num_anchors)
        )
        self.bbox_pred = nn.ModuleList(
            nn.Conv2d(s.channels, a * 4, 3, padding=1) for s, a in zip(input_shape, num_anchors)
        )
        for layer in [*self.cls_score, *self.bbox_pred]:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """
        Returns:
            logits: per map (N, Ai * (K + 1), Hi, Wi); deltas: per map (N, Ai * 4, Hi, Wi).
        """
        logits = [layer(x) for layer, x in zip(self.cls_score, features)]
        deltas = [layer(x) for layer, x in zip(self.bbox_pred, features)]
        return logits, deltas


class SSD(DenseDetector):
    """SSD: a backbone's maps, one convolution per map for scores and boxes, SSD's matching, loss and
    inference. Defaults are the paper's and the Caffe recipe's values."""

    #: Its imbalance handling (d2imbalance.analysis.hyperparameters): hard negative mining.
    HYPERPARAMETERS = (
        Hyperparameter("neg_pos_ratio", 3.0, "hard negatives kept per positive, per image (SSD paper §2.2, 3:1)"),
    )

    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        head_in_features: Optional[List[str]] = None,
        anchor_generator: SSDAnchorGenerator,
        box2box_transform: Optional[Box2BoxTransform] = None,
        num_classes: int,
        iou_threshold: float = 0.5,
        neg_pos_ratio: float = 3.0,
        smooth_l1_beta: float = 1.0,
        test_score_thresh: float = 0.01,
        test_topk_per_class: int = 400,
        test_nms_thresh: float = 0.45,
        max_detections_per_image: int = 200,
        pixel_mean: Tuple[float, float, float],
        pixel_std: Tuple[float, float, float],
        input_format: str = "RGB",
    ):
        """
        Args:
            backbone: e.g. :class:`~.vgg.SSDVGG`; its ``padding_constraints`` give the input size.
            head: an :class:`SSDHead` (or a module with its ``num_anchors`` and ``in_channels``, the
                boxes per location and channels of each map, checked against the anchor generator and
                the backbone), returning per-map logits (K + 1 per box) and deltas.
            head_in_features: backbone outputs fed to the head; default all, by increasing stride.
            anchor_generator: the default boxes; its boxes per location must equal the head's.
            box2box_transform: default ``Box2BoxTransform(SSD_BOX_WEIGHTS)`` (variances 0.1, 0.2).
            num_classes: K foreground classes.
            iou_threshold: a prior is positive at IoU >= this with a ground truth (besides the forced
                best prior of each ground truth).
            neg_pos_ratio: hard negatives per positive, per image.
            smooth_l1_beta: of the box loss (Caffe's and mmdetection's SSD: 1).
            test_score_thresh: class scores must exceed it (Caffe: confidence_threshold 0.01).
            test_topk_per_class: per class, candidates kept before NMS (Caffe: nms_param.top_k 400).
            test_nms_thresh: class-wise NMS IoU (Caffe: 0.45).
            max_detections_per_image: after NMS (Caffe: keep_top_k 200).
            pixel_mean, pixel_std, input_format: of the images, as in :class:`DenseDetector`.
        """
        super().__init__(backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std)
        shapes = backbone.output_shape()
        if list(anchor_generator.num_anchors) != list(head.num_anchors):
            raise ValueError(
                f"The anchor generator makes {anchor_generator.num_anchors} boxes per location but the head "
                f"predicts {head.num_anchors}; set head.num_anchors to 2 + 2 * len(aspect_ratios) per map."
            )
        head_channels = list(head.in_channels)
        backbone_channels = [shapes[f].channels for f in self.head_in_features]
        if head_channels != backbone_channels:
            raise ValueError(
                f"The head takes {head_channels} channels but the backbone's {self.head_in_features} have "
                f"{backbone_channels}; set head.input_shape to the backbone's output channels."
            )
        self.anchor_generator = anchor_generator
        self.box2box_transform = box2box_transform or Box2BoxTransform(weights=SSD_BOX_WEIGHTS)
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.smooth_l1_beta = smooth_l1_beta
        self.test_score_thresh = test_score_thresh
        self.test_topk_per_class = test_topk_per_class
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.input_format = input_format

    def preprocess_image(self, batched_inputs: List[Dict[str, Tensor]]) -> ImageList:
        size = self.backbone.padding_constraints.get("square_size")
        for x in batched_inputs:
            height, width = x["image"].shape[-2:]
            if size and max(height, width) > size:
                raise ValueError(
                    f"SSD takes images of at most {size}x{size}, got {height}x{width}; resize them with "
                    f"detectron2.data.transforms.Resize(({size}, {size})) as the SSD configs do."
                )
        return super().preprocess_image(batched_inputs)

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_deltas = self._transpose_dense_predictions(predictions, [self.num_classes + 1, 4])
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes, matched_idxs = self.label_anchors(anchors, gt_instances)
        return self.losses(anchors, pred_logits, gt_labels, pred_deltas, gt_boxes, matched_idxs)

    @torch.no_grad()
    def label_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]):
        """SSD's matching (:func:`~.ssd_ops.match_priors`) of each image's ground truths to the priors.

        Returns:
            gt_labels: per image (R,) int64, the class of the matched ground truth, K for background.
            gt_boxes: per image (R, 4), the matched ground-truth box (ground truth 0's, or zeros, for
                background: never read).
            matched_idxs: per image (R,) int64, the matched ground truth's index, -1 for background; an
                object's match count M_i is ``(matched_idxs == i).sum()``.
        """
        anchors = Boxes.cat(anchors)
        return self.label_priors_per_image([anchors] * len(gt_instances), gt_instances)

    @torch.no_grad()
    def label_priors_per_image(self, priors: List[Boxes], gt_instances: List[Instances]):
        """:meth:`label_anchors` with each image's own priors (RefineDet's ODM matches its refined
        anchors); same returns."""
        gt_labels, gt_boxes, matched_idxs = [], [], []
        for image_priors, inst in zip(priors, gt_instances):
            matched = match_priors(pairwise_iou(inst.gt_boxes, image_priors), self.iou_threshold)
            if len(inst) > 0:
                labels = inst.gt_classes[matched.clamp(min=0)]
                boxes = inst.gt_boxes.tensor[matched.clamp(min=0)]
                labels[matched < 0] = self.num_classes
            else:
                labels = torch.full_like(matched, self.num_classes)
                boxes = torch.zeros_like(image_priors.tensor)
            gt_labels.append(labels)
            gt_boxes.append(boxes)
            matched_idxs.append(matched)
        return gt_labels, gt_boxes, matched_idxs

    def losses(
        self,
        anchors: List[Boxes],
        pred_logits: List[Tensor],
        gt_labels: List[Tensor],
        pred_deltas: List[Tensor],
        gt_boxes: List[Tensor],
        matched_idxs: List[Tensor],
        *,
        cls_weights: Optional[Tensor] = None,
        box_weights: Optional[Tensor] = None,
    ) -> Dict[str, Tensor]:
        """
        Args:
            anchors: per map Boxes (Hi * Wi * Ai).
            pred_logits, pred_deltas: per map (N, Hi * Wi * Ai, K + 1) and (N, Hi * Wi * Ai, 4).
            gt_labels, gt_boxes, matched_idxs: from :meth:`label_anchors`. Vanilla SSD does not read
                matched_idxs; reweighting subclasses derive per-object weights from it.
            cls_weights, box_weights: optional (N, R) factors on each prior's classification / box loss
                (see :func:`~.ssd_ops.multibox_loss`).

        Returns:
            {"loss_cls", "loss_box_reg"}, each divided by the batch's number of positive priors.
        """
        loss_cls, loss_box, num_pos, num_neg = self.multibox_loss(
            Boxes.cat(anchors).tensor,
            cat(pred_logits, dim=1),
            torch.stack(gt_labels),
            cat(pred_deltas, dim=1),
            torch.stack(gt_boxes),
            cls_weights=cls_weights,
            box_weights=box_weights,
        )
        storage = get_event_storage()
        storage.put_scalar("num_pos_anchors", num_pos / len(gt_labels))
        storage.put_scalar("num_mined_negatives", num_neg / len(gt_labels))
        return {"loss_cls": loss_cls, "loss_box_reg": loss_box}

    def multibox_loss(
        self,
        priors: Tensor,
        pred_logits: Tensor,
        gt_labels: Tensor,
        pred_deltas: Tensor,
        gt_boxes: Tensor,
        **kwargs,
    ) -> Tuple[Tensor, Tensor, int, int]:
        """:func:`~.ssd_ops.multibox_loss` with the box targets encoded on ``priors``.

        Args:
            priors: (R, 4) shared by the batch, or (N, R, 4) per image (RefineDet's refined anchors).
            pred_logits, gt_labels, pred_deltas, gt_boxes: (N, R, K + 1), (N, R), (N, R, 4), (N, R, 4).
            kwargs: ``cls_weights``, ``box_weights``, ``ignore`` of :func:`~.ssd_ops.multibox_loss`.
        """
        priors = priors.expand_as(gt_boxes)
        gt_deltas = self.box2box_transform.get_deltas(priors.reshape(-1, 4), gt_boxes.reshape(-1, 4))
        return multibox_loss(
            pred_logits,
            gt_labels,
            pred_deltas,
            gt_deltas.view_as(gt_boxes),
            neg_pos_ratio=self.neg_pos_ratio,
            smooth_l1_beta=self.smooth_l1_beta,
            **kwargs,
        )

    def forward_inference(self, images: ImageList, features: List[Tensor], predictions: List[List[Tensor]]):
        pred_logits, pred_deltas = self._transpose_dense_predictions(predictions, [self.num_classes + 1, 4])
        anchors = Boxes.cat(self.anchor_generator(features))
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            scores = cat([x[img_idx] for x in pred_logits]).softmax(dim=-1)[:, : self.num_classes]
            deltas = cat([x[img_idx] for x in pred_deltas])
            results.append(self.inference_single_image(anchors, scores, deltas, image_size))
        return results

    def inference_single_image(self, anchors: Boxes, scores: Tensor, deltas: Tensor, image_size: Tuple[int, int]):
        """
        Args:
            anchors: all R priors of the image.
            scores: (R, K) softmax probabilities without background.
            deltas: (R, 4).
        """
        prior_idx, classes, scores = select_per_class(scores, self.test_score_thresh, self.test_topk_per_class)
        boxes = self.box2box_transform.apply_deltas(deltas[prior_idx], anchors.tensor[prior_idx])
        keep = batched_nms(boxes, scores, classes, self.test_nms_thresh)[: self.max_detections_per_image]
        return Instances(image_size, pred_boxes=Boxes(boxes[keep]), scores=scores[keep], pred_classes=classes[keep])

"""YOLOv3 (Redmon & Farhadi, "YOLOv3: An Incremental Improvement", 2018) as a detectron2 dense detector.

The network, targets, loss and inference of Darknet's yolov3.cfg and ``src/yolo_layer.c``
(pjreddie/darknet), the code the ResObj paper trained with "all hyper-parameters unchanged":

* **Network** (:class:`YOLOv3Head` on :class:`~.darknet.Darknet53`): per output, five convolutions
  alternating 1x1 (half the backbone stage's channels) and 3x3 (its channels), a 3x3 convolution and a
  1x1 prediction convolution with bias giving, per anchor, (x, y, w, h, objectness, K classes); the
  fifth convolution's output is reduced by a 1x1 convolution, upsampled 2x (nearest) and concatenated
  with the next finer backbone stage (yolov3.cfg layers 75-106).
* **Anchors**: the nine COCO anchors of yolov3.cfg, in pixels of the network input, masks 0-2 on the
  stride-8 output, 3-5 on stride 16, 6-8 on stride 32.
* **Targets** (``forward_yolo_layer``): each ground truth takes the one anchor, of all nine, whose shape
  (both boxes centred at the origin) has the highest IoU with its own, at the cell holding its centre,
  on the output that anchor belongs to; two ground truths falling on the same prediction leave it the
  last one's box and the union of their classes (``delta_yolo_class``). Every other prediction whose
  decoded box overlaps some ground truth of its image by IoU > ``ignore_thresh`` (0.7) takes no
  objectness loss; the rest are negatives.
* **Loss**: Darknet writes its gradient straight onto the raw outputs (``backward_yolo_layer`` applies
  no logistic derivative), so each term here is the loss whose gradient is Darknet's delta:
  x, y: (2 - w h) BCE(sigmoid(t_xy), cell offset); w, h: (2 - w h) / 2 (t_wh - log(size / anchor))^2,
  with w h the ground truth's area as a fraction of the input; objectness and classes: BCE on sigmoids.
  Darknet sums over the batch and divides the update by the batch size, so the losses here are sums
  divided by the number of images.
* **Inference** (``get_yolo_detections`` and ``validate_detector``, which made the paper's COCO
  numbers): predictions with objectness <= 0.005 are dropped; class score = objectness x class
  probability, kept above 0.005; class-wise NMS at IoU 0.45. Darknet keeps every such box; here at
  most ``test_topk_candidates`` per output go into NMS and ``max_detections_per_image`` (100, what
  COCO's AP counts per category) come out.
* **Input**: RGB in [0, 1] (``pixel_std`` 255). Test images are letterboxed (aspect kept, longer side
  = ``input_size``) and padded with 0.5 grey to ``input_size`` squared; Darknet centres the image,
  here it sits at the top-left so detectron2's postprocessing maps boxes back unchanged (a shift of
  the image by whole pixels under a fully convolutional network).
* **Multi-scale training** (yolov3.cfg ``random=1``): with a ``multiscale`` schedule, each training
  batch (square canvases from :class:`~d2imbalance.data.darknet_augmentation.DarknetJitterCrop`) is
  resized with its boxes to the schedule's size for the current iteration (320-608 every 10
  iterations). It happens here rather than in the loader so that the size follows the iteration,
  identical on every GPU and continued on ``--resume``.

Subclasses change the objectness (YOLOv3-ResObj) through :meth:`YOLOv3.split_predictions`,
:meth:`YOLOv3.objectness_losses` and :meth:`YOLOv3.inference_objectness`.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._compat import require_detectron2
from .darknet import DarknetConv, darknet_init

require_detectron2("d2imbalance.modeling.yolov3")
from detectron2.layers import ShapeSpec, batched_nms  # noqa: E402
from detectron2.modeling import Backbone  # noqa: E402
from detectron2.modeling.meta_arch.dense_detector import DenseDetector  # noqa: E402
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

__all__ = [
    "YOLOV3_COCO_ANCHORS",
    "YOLOV3_ANCHOR_MASKS",
    "YOLOv3Head",
    "YOLOv3",
    "YOLOTargets",
    "shape_matched_anchors",
]

#: yolov3.cfg's anchors (width, height) in pixels of the network input.
YOLOV3_COCO_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326))
#: Which anchors each output predicts, finest (stride 8) first: yolov3.cfg's ``mask`` of each [yolo].
YOLOV3_ANCHOR_MASKS = ((0, 1, 2), (3, 4, 5), (6, 7, 8))
_WH_LOG_CLAMP = math.log(1000.0 / 16)


class YOLOv3Head(nn.Module):
    """YOLOv3's neck and prediction layers over three backbone maps (finest first).

    For the backbone maps of C3, C4, C5 channels (Darknet-53: 256, 512, 1024), output l has a block of
    five convolutions (1x1 to C_l / 2, 3x3 to C_l, 1x1, 3x3, 1x1 to C_l / 2), then a 3x3 convolution to
    C_l and the 1x1 prediction convolution to A (5 + K). Coarse to fine, the block output is reduced by
    a 1x1 convolution to C_{l-1} / 2, upsampled 2x and concatenated with the finer backbone map.
    Every convolution but the prediction has BatchNorm and LeakyReLU(0.1) (:class:`~.darknet.DarknetConv`).
    """

    def __init__(self, *, input_shape: List[ShapeSpec], num_classes: int, num_anchors: int = 3):
        """
        Args:
            input_shape: the three backbone maps, finest first (their channels).
            num_classes: K.
            num_anchors: A, anchors per location of every output (yolov3.cfg: 3).
        """
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"YOLOv3Head takes 3 backbone maps (strides 8, 16, 32), got {len(input_shape)}.")
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.in_channels = [s.channels for s in input_shape]
        c3, c4, c5 = self.in_channels
        self.block5 = self._block(c5, c5)
        self.block4 = self._block(c4 // 2 + c4, c4)
        self.block3 = self._block(c3 // 2 + c3, c3)
        self.lateral4 = DarknetConv(c5 // 2, c4 // 2, 1)
        self.lateral3 = DarknetConv(c4 // 2, c3 // 2, 1)
        outputs = num_anchors * (5 + num_classes)
        self.out5, self.out4, self.out3 = (DarknetConv(c // 2, c, 3) for c in (c5, c4, c3))
        self.pred5, self.pred4, self.pred3 = (nn.Conv2d(c, outputs, 1) for c in (c5, c4, c3))
        for pred in (self.pred3, self.pred4, self.pred5):
            darknet_init(pred)

    @staticmethod
    def _block(in_channels: int, channels: int) -> nn.Sequential:
        half = channels // 2
        return nn.Sequential(
            DarknetConv(in_channels, half, 1),
            DarknetConv(half, channels, 3),
            DarknetConv(channels, half, 1),
            DarknetConv(half, channels, 3),
            DarknetConv(channels, half, 1),
        )

    def routes(self, features: List[Tensor]) -> List[Tuple[Tensor, Tensor]]:
        """Per output, finest first: (the block output the 3x3 head convolution reads, that
        convolution's output which the prediction convolution reads)."""
        c3, c4, c5 = features
        route5 = self.block5(c5)
        route4 = self.block4(torch.cat([F.interpolate(self.lateral4(route5), scale_factor=2.0, mode="nearest"), c4], 1))
        route3 = self.block3(torch.cat([F.interpolate(self.lateral3(route4), scale_factor=2.0, mode="nearest"), c3], 1))
        return [(route3, self.out3(route3)), (route4, self.out4(route4)), (route5, self.out5(route5))]

    def forward(self, features: List[Tensor]) -> List[Tensor]:
        """
        Returns:
            per output, finest first: (N, A * (5 + K), Hi, Wi), each anchor's x, y, w, h, objectness
            and K class logits contiguous (Darknet's ``entry_index`` layout).
        """
        preds = (self.pred3, self.pred4, self.pred5)
        return [pred(head) for pred, (_, head) in zip(preds, self.routes(features))]

    def darknet_layers(self) -> List[nn.Module]:
        """The convolutions in yolov3.cfg's order (layers 75-105), for :mod:`.darknet_weights`."""
        return [
            *self.block5, self.out5, self.pred5, self.lateral4,
            *self.block4, self.out4, self.pred4, self.lateral3,
            *self.block3, self.out3, self.pred3,
        ]  # fmt: skip


def shape_matched_anchors(gt_wh: Tensor, anchors: Tensor) -> Tensor:
    """For each ground truth, the index of the anchor of highest IoU when both are centred at the
    origin (Darknet's ``truth_shift``); the first of equal IoUs, anchor 0 for an empty box.

    Args:
        gt_wh: (M, 2) widths and heights; anchors: (A, 2).
    """
    inter = torch.min(gt_wh[:, None, :], anchors[None, :, :]).prod(dim=2)
    union = gt_wh.prod(dim=1)[:, None] + anchors.prod(dim=1)[None, :] - inter
    return (inter / union.clamp(min=1e-12)).argmax(dim=1)


@dataclass
class YOLOTargets:
    """Training targets of a batch whose predictions are flattened to (N, R).

    Attributes:
        objectness: (N, R) labels, 1 (assigned a ground truth), 0 (negative), -1 (ignored).
        positive_index: (P,) flat indices into N * R of the positive predictions.
        box: (P, 4) Darknet's box targets (cell offset x, y in (0, 1); log(size / anchor) w, h).
        box_weight: (P,) the weight 2 - w h of the ground truth each positive regresses to.
        classes: (P, K) multi-hot class targets.
    """

    objectness: Tensor
    positive_index: Tensor
    box: Tensor
    box_weight: Tensor
    classes: Tensor


class YOLOv3(DenseDetector):
    """YOLOv3: Darknet's targets, loss and inference on a backbone and :class:`YOLOv3Head`."""

    #: No imbalance hyper-parameter (d2imbalance.analysis.hyperparameters): every prediction neither
    #: assigned nor above ``ignore_thresh`` is a negative of weight 1. ``ignore_thresh`` is part of the
    #: matching, which RetinaNet's declaration does not count either.
    HYPERPARAMETERS = ()

    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        head_in_features: Optional[List[str]] = None,
        num_classes: int,
        anchors: Sequence[Sequence[float]] = YOLOV3_COCO_ANCHORS,
        anchor_masks: Sequence[Sequence[int]] = YOLOV3_ANCHOR_MASKS,
        ignore_thresh: float = 0.7,
        input_size: int = 608,
        pad_value: float = 127.5,
        multiscale=None,
        test_score_thresh: float = 0.005,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.45,
        max_detections_per_image: int = 100,
        pixel_mean: Tuple[float, float, float] = (0.0, 0.0, 0.0),
        pixel_std: Tuple[float, float, float] = (255.0, 255.0, 255.0),
        input_format: str = "RGB",
    ):
        """
        Args:
            backbone: e.g. :class:`~.darknet.Darknet53`, outputs at strides 8, 16, 32.
            head: a :class:`YOLOv3Head` (or a module with its ``num_classes``, ``num_anchors`` and
                ``in_channels``, checked against the backbone and the anchor masks).
            head_in_features: backbone outputs fed to the head; default all, by increasing stride.
            num_classes: K.
            anchors: (width, height) of every anchor in input pixels (yolov3.cfg ``anchors``).
            anchor_masks: per output, finest first, the anchors it predicts (yolov3.cfg ``mask``).
            ignore_thresh: predictions overlapping a ground truth by IoU above it take no objectness
                loss as negatives (yolov3.cfg 0.7).
            input_size: the square side test images are padded to (yolov3.cfg: 608; the paper also
                reports 320); the test mapper resizes their longer side to it.
            pad_value: the padding pixel, before normalisation (Darknet's 0.5 grey on 0-255 pixels).
            multiscale: a :class:`~d2imbalance.data.darknet_augmentation.MultiScaleSchedule` (training
                batches resized to its size at the current iteration) or None (as they come).
            test_score_thresh: objectness and class score thresholds (Darknet's validation: 0.005).
            test_topk_candidates: per output, the highest-scoring (prediction, class) pairs kept before
                NMS (0: all, as Darknet).
            test_nms_thresh: class-wise NMS IoU (0.45).
            max_detections_per_image: after NMS (0: all, as Darknet).
            pixel_mean, pixel_std, input_format: of the images, as in :class:`DenseDetector`;
                Darknet's inputs are RGB divided by 255.
        """
        super().__init__(backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std)
        shapes = backbone.output_shape()
        if len(anchor_masks) != len(self.head_in_features):
            raise ValueError(
                f"{len(anchor_masks)} anchor masks for {len(self.head_in_features)} outputs "
                f"({self.head_in_features}); give one mask per output, finest first."
            )
        if {len(m) for m in anchor_masks} != {head.num_anchors}:
            raise ValueError(
                f"anchor_masks {[list(m) for m in anchor_masks]} must each hold head.num_anchors="
                f"{head.num_anchors} anchor indices."
            )
        bad = [i for m in anchor_masks for i in m if not 0 <= i < len(anchors)]
        if bad:
            raise ValueError(f"anchor_masks refer to anchors {bad}, but there are {len(anchors)} anchors.")
        backbone_channels = [shapes[f].channels for f in self.head_in_features]
        if list(head.in_channels) != backbone_channels:
            raise ValueError(
                f"The head takes {list(head.in_channels)} channels but the backbone's {self.head_in_features} "
                f"have {backbone_channels}; set head.input_shape to the backbone's output channels."
            )
        if head.num_classes != num_classes:
            raise ValueError(f"head.num_classes={head.num_classes} but num_classes={num_classes}; make them equal.")
        self.strides = [shapes[f].stride for f in self.head_in_features]
        if input_size % max(self.strides):
            raise ValueError(f"input_size={input_size} must be a multiple of the largest stride {max(self.strides)}.")
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(-1, 2), False)
        # For each of the anchors: the output predicting it and its slot there, -1 if no mask holds it.
        anchor_level = torch.full((len(anchors),), -1, dtype=torch.long)
        anchor_slot = torch.full((len(anchors),), -1, dtype=torch.long)
        for level, mask in enumerate(anchor_masks):
            anchor_level[list(mask)] = level
            anchor_slot[list(mask)] = torch.arange(len(mask))
        self.register_buffer("anchor_level", anchor_level, False)
        self.register_buffer("anchor_slot", anchor_slot, False)
        self.anchor_masks = [list(m) for m in anchor_masks]
        self.num_classes = num_classes
        self.ignore_thresh = ignore_thresh
        self.input_size = input_size
        self.pad_value = pad_value
        self.multiscale = multiscale
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.input_format = input_format

    # ----------------------------------------------------------------------------------- input
    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        if self.training and self.multiscale is not None:
            batched_inputs = self.resize_training_batch(batched_inputs, self.multiscale.size_at(get_event_storage().iter))
        return super().forward(batched_inputs)

    def resize_training_batch(self, batched_inputs: List[Dict[str, Tensor]], size: int) -> List[Dict[str, Tensor]]:
        """The batch's canvases and their boxes resized to ``size`` squared (multi-scale). Darknet's
        canvases are square; images of other shapes (another mapper) are first padded with
        ``pad_value`` at the bottom and right to the batch's largest side."""
        from ..data.darknet_augmentation import resize_batch

        images = [self._move_to_current_device(x["image"]).float() for x in batched_inputs]
        side = max(max(image.shape[-2:]) for image in images)
        images = torch.stack(
            [F.pad(x, (0, side - x.shape[-1], 0, side - x.shape[-2]), value=self.pad_value) for x in images]
        )
        instances = [x["instances"].to(self.device) for x in batched_inputs]
        images, boxes = resize_batch(images, [i.gt_boxes.tensor for i in instances], size)
        resized = []
        for x, image, old, new_boxes in zip(batched_inputs, images, instances, boxes):
            new = Instances((size, size), gt_boxes=Boxes(new_boxes), gt_classes=old.gt_classes)
            resized.append({**x, "image": image, "instances": new})
        return resized

    def preprocess_image(self, batched_inputs: List[Dict[str, Tensor]]) -> ImageList:
        """Pad with ``pad_value`` (before normalising) to a multiple of 32; at test to ``input_size``
        squared, the letterbox canvas."""
        images = [self._move_to_current_device(x["image"]).float() for x in batched_inputs]
        if not self.training:
            for image in images:
                if max(image.shape[-2:]) > self.input_size:
                    raise ValueError(
                        f"YOLOv3 tests at most {self.input_size}x{self.input_size}, got an image of "
                        f"{tuple(image.shape[-2:])}; resize with detectron2.data.transforms.ResizeShortestEdge("
                        f"{self.input_size}, max_size={self.input_size}) as the YOLOv3 test mappers do."
                    )
        constraints = {"square_size": self.input_size} if not self.training else {}
        padded = ImageList.from_tensors(images, max(self.strides), self.pad_value, padding_constraints=constraints)
        return ImageList((padded.tensor - self.pixel_mean) / self.pixel_std, padded.image_sizes)

    # ------------------------------------------------------------------------------ predictions
    def prediction_maps(self, predictions) -> List[Tensor]:
        """The head's per-output maps (N, A * (5 + K), Hi, Wi) within its output."""
        return predictions

    def split_predictions(self, predictions) -> Tuple[Tensor, List[Tensor]]:
        """The head's output as (N, R, 5 + K) per prediction, R = sum of Hi Wi A in the order output,
        row, column, anchor; and the extra objectness terms of subclasses (none here)."""
        return self.flatten_outputs(predictions, 5 + self.num_classes), []

    @staticmethod
    def flatten_outputs(maps: List[Tensor], channels: int) -> Tensor:
        """Per output (N, A * channels, H, W) -> one (N, R, channels), anchor-major channels as Darknet."""
        flat = []
        for x in maps:
            n, _, h, w = x.shape
            flat.append(x.view(n, -1, channels, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, channels))
        return torch.cat(flat, dim=1)

    def prediction_grid(self, maps: List[Tensor]) -> Dict[str, Tensor]:
        """For the R flattened predictions: cell column ``x`` and row ``y``, ``stride`` and anchor size
        ``anchor_wh`` (R, 2); plus ``level_start`` (L,), each output's first index, and ``level_hw``
        (L, 2), each output's height and width."""
        columns, rows, strides, anchor_wh, starts, start = [], [], [], [], [], 0
        for x, stride, mask in zip(maps, self.strides, self.anchor_masks):
            h, w = x.shape[-2:]
            a = len(mask)
            ys, xs = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
            columns.append(xs.reshape(-1, 1).expand(-1, a).reshape(-1))
            rows.append(ys.reshape(-1, 1).expand(-1, a).reshape(-1))
            strides.append(torch.full((h * w * a,), float(stride), device=x.device))
            anchor_wh.append(self.anchors[mask].repeat(h * w, 1))
            starts.append(start)
            start += h * w * a
        return dict(
            x=torch.cat(columns), y=torch.cat(rows), stride=torch.cat(strides), anchor_wh=torch.cat(anchor_wh),
            level_start=torch.tensor(starts, device=maps[0].device),
            level_hw=torch.tensor([list(x.shape[-2:]) for x in maps], device=maps[0].device),
        )

    @staticmethod
    def decode_boxes(outputs: Tensor, grid: Dict[str, Tensor]) -> Tensor:
        """(..., R, >= 4) raw x, y, w, h -> (..., R, 4) XYXY boxes in input pixels (``get_yolo_box``).
        t_w, t_h are clamped at log(1000 / 16) as detectron2's ``Box2BoxTransform`` does, so an untrained
        network's outputs give large boxes, not infinite ones (Darknet has no clamp)."""
        cx = (grid["x"] + outputs[..., 0].sigmoid()) * grid["stride"]
        cy = (grid["y"] + outputs[..., 1].sigmoid()) * grid["stride"]
        half_wh = outputs[..., 2:4].clamp(max=_WH_LOG_CLAMP).exp() * grid["anchor_wh"] / 2
        return torch.stack([cx - half_wh[..., 0], cy - half_wh[..., 1], cx + half_wh[..., 0], cy + half_wh[..., 1]], -1)

    # --------------------------------------------------------------------------------- training
    def forward_training(self, images: ImageList, features, predictions, gt_instances: List[Instances]):
        outputs, residuals = self.split_predictions(predictions)
        grid = self.prediction_grid(self.prediction_maps(predictions))
        input_hw = tuple(images.tensor.shape[-2:])
        targets = self.label_predictions(outputs, grid, gt_instances, input_hw)
        return self.losses(outputs, residuals, targets)

    @torch.no_grad()
    def label_predictions(
        self, outputs: Tensor, grid: Dict[str, Tensor], gt_instances: List[Instances], input_hw: Tuple[int, int]
    ) -> YOLOTargets:
        """Darknet's targets (``forward_yolo_layer``) for predictions ``outputs`` (N, R, 5 + K) on an
        input of ``input_hw`` (the network's width and height normalise the ground-truth areas)."""
        num_images, num_predictions = outputs.shape[:2]
        decoded = self.decode_boxes(outputs.float(), grid)
        labels = torch.zeros((num_images, num_predictions), dtype=torch.long, device=outputs.device)
        positive_index, box, box_weight, classes = [], [], [], []
        input_area = float(input_hw[0] * input_hw[1])
        for image, gt in enumerate(gt_instances):
            gt_boxes = gt.gt_boxes.tensor.float()
            if len(gt_boxes) == 0:
                continue
            iou = pairwise_iou(Boxes(decoded[image]), Boxes(gt_boxes))  # (R, M)
            labels[image][iou.max(dim=1).values > self.ignore_thresh] = -1
            gt_wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
            gt_centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
            best = shape_matched_anchors(gt_wh, self.anchors)
            level, slot = self.anchor_level[best], self.anchor_slot[best]
            kept = level >= 0  # Darknet's int_index(mask, best_n) >= 0
            if not kept.any():
                continue
            gt_wh, gt_centre, best, level, slot = gt_wh[kept], gt_centre[kept], best[kept], level[kept], slot[kept]
            gt_classes = gt.gt_classes[kept]
            stride = torch.tensor(self.strides, device=outputs.device, dtype=torch.float32)[level]
            cell_x = (gt_centre[:, 0] / stride).floor().long().clamp(min=0)
            cell_y = (gt_centre[:, 1] / stride).floor().long().clamp(min=0)
            level_h, level_w = grid["level_hw"][level].unbind(1)
            cell_x, cell_y = torch.min(cell_x, level_w - 1), torch.min(cell_y, level_h - 1)
            anchors_per_cell = torch.tensor([len(m) for m in self.anchor_masks], device=outputs.device)[level]
            index = grid["level_start"][level] + (cell_y * level_w + cell_x) * anchors_per_cell + slot
            # Two ground truths on one prediction: the later one's box, the union of their classes.
            order = torch.arange(len(index), device=index.device)
            last = torch.full((num_predictions,), -1, dtype=torch.long, device=index.device)
            last.scatter_reduce_(0, index, order, reduce="amax")
            unique = torch.unique(index)
            winner = last[unique]
            multi_hot = torch.zeros((len(unique), self.num_classes), device=outputs.device)
            multi_hot[torch.searchsorted(unique, index), gt_classes] = 1.0
            offsets = torch.stack([gt_centre[winner, 0] / stride[winner] - cell_x[winner],
                                   gt_centre[winner, 1] / stride[winner] - cell_y[winner]], 1)
            log_wh = torch.log(gt_wh[winner].clamp(min=1e-6) / self.anchors[best[winner]])
            labels[image, unique] = 1
            positive_index.append(unique + image * num_predictions)
            box.append(torch.cat([offsets, log_wh], dim=1))
            box_weight.append(2.0 - gt_wh[winner].prod(dim=1) / input_area)
            classes.append(multi_hot)
        device = outputs.device
        return YOLOTargets(
            objectness=labels,
            positive_index=torch.cat(positive_index) if positive_index else torch.zeros(0, dtype=torch.long, device=device),
            box=torch.cat(box) if box else torch.zeros((0, 4), device=device),
            box_weight=torch.cat(box_weight) if box_weight else torch.zeros(0, device=device),
            classes=torch.cat(classes) if classes else torch.zeros((0, self.num_classes), device=device),
        )

    def losses(self, outputs: Tensor, residuals: List[Tensor], targets: YOLOTargets) -> Dict[str, Tensor]:
        """Darknet's loss, summed and divided by the number of images.

        Returns:
            "loss_xy", "loss_wh", "loss_cls" and the objectness terms of :meth:`objectness_losses`.
        """
        num_images = outputs.shape[0]
        positives = outputs.flatten(0, 1)[targets.positive_index]  # (P, 5 + K)
        weight = targets.box_weight[:, None]
        loss_xy = (weight * F.binary_cross_entropy_with_logits(positives[:, :2], targets.box[:, :2], reduction="none")).sum()
        loss_wh = (weight * 0.5 * (positives[:, 2:4] - targets.box[:, 2:]) ** 2).sum()
        loss_cls = F.binary_cross_entropy_with_logits(positives[:, 5:], targets.classes, reduction="sum")
        losses = {"loss_xy": loss_xy, "loss_wh": loss_wh, "loss_cls": loss_cls}
        losses.update(self.objectness_losses(outputs[..., 4], residuals, targets.objectness))
        storage = get_event_storage()
        storage.put_scalar("yolo/num_pos", len(targets.positive_index) / num_images)
        storage.put_scalar("yolo/num_ignored", (targets.objectness == -1).sum().item() / num_images)
        return {k: v / num_images for k, v in losses.items()}

    def objectness_losses(self, objectness: Tensor, residuals: List[Tensor], labels: Tensor) -> Dict[str, Tensor]:
        """BCE of the objectness logits (N, R) against ``labels`` (1 / 0; -1 ignored), summed."""
        valid = labels >= 0
        loss = F.binary_cross_entropy_with_logits(objectness, (labels == 1).to(objectness.dtype), reduction="none")
        return {"loss_obj": torch.where(valid, loss, torch.zeros_like(loss)).sum()}

    # -------------------------------------------------------------------------------- inference
    def inference_objectness(self, objectness: Tensor, residuals: List[Tensor]) -> Tensor:
        """The objectness logits scored at test time (N, R)."""
        return objectness

    def forward_inference(self, images: ImageList, features, predictions):
        outputs, residuals = self.split_predictions(predictions)
        grid = self.prediction_grid(self.prediction_maps(predictions))
        boxes = self.decode_boxes(outputs, grid)
        objectness = self.inference_objectness(outputs[..., 4], residuals).sigmoid()
        class_prob = outputs[..., 5:].sigmoid()
        return [
            self.inference_single_image(boxes[i], objectness[i], class_prob[i], grid, image_size)
            for i, image_size in enumerate(images.image_sizes)
        ]

    def inference_single_image(
        self, boxes: Tensor, objectness: Tensor, class_prob: Tensor, grid: Dict[str, Tensor], image_size
    ) -> Instances:
        """Darknet's ``get_yolo_detections`` + ``do_nms_sort`` for one image: boxes (R, 4),
        objectness (R,) and class probabilities (R, K), all after the sigmoid."""
        scores = objectness[:, None] * class_prob
        scores = torch.where(objectness[:, None] > self.test_score_thresh, scores, torch.zeros_like(scores))
        keep_boxes, keep_scores, keep_classes = [], [], []
        bounds = grid["level_start"].tolist() + [len(boxes)]
        for start, end in zip(bounds[:-1], bounds[1:]):
            level_scores = scores[start:end].flatten()
            candidates = torch.nonzero(level_scores > self.test_score_thresh).squeeze(1)
            if self.test_topk_candidates and len(candidates) > self.test_topk_candidates:
                top = level_scores[candidates].topk(self.test_topk_candidates).indices
                candidates = candidates[top]
            keep_boxes.append(boxes[start:end][candidates // self.num_classes])
            keep_scores.append(level_scores[candidates])
            keep_classes.append(candidates % self.num_classes)
        boxes, scores, classes = torch.cat(keep_boxes), torch.cat(keep_scores), torch.cat(keep_classes)
        keep = batched_nms(boxes, scores, classes, self.test_nms_thresh)
        if self.max_detections_per_image:
            keep = keep[: self.max_detections_per_image]
        result = Instances(image_size)
        result.pred_boxes = Boxes(boxes[keep])
        result.scores = scores[keep]
        result.pred_classes = classes[keep]
        return result

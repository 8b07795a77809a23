"""Faster R-CNN's ROI heads trained on the hardest RoIs (Shrivastava et al., OHEM, CVPR 2016, §4)."""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F

from d2imbalance._compat import require_detectron2
from d2imbalance.modeling.proposal_labels import label_all_proposals

from .selection import (
    HYPERPARAMETERS,
    check_ohem_options,
    hard_example_ranking,
    ohem_scalars,
    selection_statistics,
    take_hardest,
)

require_detectron2("ohem.roi_heads")
from d2imbalance.modeling.roi_box_features import box_head_features  # noqa: E402
from detectron2.config import configurable  # noqa: E402
from detectron2.layers import cat, ciou_loss, diou_loss, nonzero_tuple  # noqa: E402
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads  # noqa: E402
from detectron2.structures import ImageList, Instances  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402
from fvcore.nn import giou_loss, smooth_l1_loss  # noqa: E402

__all__ = ["OHEMROIHeads", "per_roi_losses"]

#: RoIs per forward of the readonly pass. Its pooled features take R x 256 x 7 x 7 floats (50 KB a RoI in
#: the R50-FPN box head): all ~2000 RoIs of a batch at once raised the peak memory of an R50-FPN step at
#: 320², batch 2, to 1.40x Faster R-CNN's; 512 at a time keep them to 25 MB, whatever the proposal count.
READONLY_CHUNK = 512


def per_roi_losses(
    predictor, predictions: Tuple[Tensor, Tensor], proposals: List[Instances], *, with_box: bool = True
) -> Tensor:
    """Each RoI's own term of :meth:`FastRCNNOutputLayers.losses`, unreduced.

    ``FastRCNNOutputLayers.losses`` averages over the R RoIs: ``loss_cls`` is the mean classification loss
    and ``loss_box_reg`` the sum of the foreground RoIs' box losses divided by R, each times its
    ``loss_weight``. So with ``with_box=True``, ``per_roi_losses(...).sum() / R`` equals
    ``loss_cls + loss_box_reg``: the value of RoI i is what it adds to the loss the heads train with.

    Args:
        predictor: the heads' ``box_predictor``, a :class:`FastRCNNOutputLayers` (its loss settings:
            softmax or sigmoid cross-entropy, box loss type, smooth-L1 beta, class-agnostic boxes,
            ``loss_weight``). With ``use_fed_loss`` the sigmoid loss is summed over every class here, not
            over the classes the federated loss draws at random.
        predictions: (scores (R, K + 1), deltas (R, K * 4) or (R, 4)), ``predictor``'s output.
        proposals: per image, Instances with ``proposal_boxes``, ``gt_classes`` in [0, K] and, in images
            with objects, ``gt_boxes``.
        with_box: add the box regression loss (the paper's multi-task loss); False: classification only.

    Returns:
        (R,) float, the RoIs of all images in the order of ``proposals``.
    """
    scores, deltas = predictions
    gt_classes = cat([p.gt_classes for p in proposals], dim=0)
    num_classes = scores.shape[1] - 1
    if predictor.use_sigmoid_ce:
        target = F.one_hot(gt_classes, num_classes + 1)[:, :num_classes].to(scores.dtype)
        cls = F.binary_cross_entropy_with_logits(scores[:, :-1], target, reduction="none").sum(dim=1)
    else:
        cls = F.cross_entropy(scores, gt_classes, reduction="none")
    losses = cls * predictor.loss_weight.get("loss_cls", 1.0)
    if not with_box:
        return losses

    fg = nonzero_tuple((gt_classes >= 0) & (gt_classes < num_classes))[0]
    if fg.numel() == 0:
        return losses
    proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)[fg]
    # Images without objects have no gt_boxes; their RoIs are all background, so the placeholder is unused.
    gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0)[fg]
    box_dim = proposal_boxes.shape[1]
    if deltas.shape[1] == box_dim:  # class-agnostic regression
        fg_deltas = deltas[fg]
    else:
        fg_deltas = deltas.view(-1, num_classes, box_dim)[fg, gt_classes[fg]]
    transform, loss_type = predictor.box2box_transform, predictor.box_reg_loss_type
    if loss_type == "smooth_l1":
        target_deltas = transform.get_deltas(proposal_boxes, gt_boxes)
        box = smooth_l1_loss(fg_deltas, target_deltas, predictor.smooth_l1_beta, reduction="none").sum(dim=1)
    else:
        iou_losses = {"giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}
        if loss_type not in iou_losses:
            raise ValueError(f"box_reg_loss_type={loss_type!r} is not one FastRCNNOutputLayers knows.")
        box = iou_losses[loss_type](transform.apply_deltas(fg_deltas, proposal_boxes), gt_boxes, reduction="none")
    return losses.index_add(0, fg, box.to(losses.dtype) * predictor.loss_weight.get("loss_box_reg", 1.0))


@ROI_HEADS_REGISTRY.register()
class OHEMROIHeads(StandardROIHeads):
    """StandardROIHeads trained on the hardest RoIs of each image instead of a random sample (OHEM).

    In training, every proposal (detectron2's, with the ground-truth boxes appended) is labelled; a
    forward pass without gradient computes each one's loss (the paper's readonly RoI network); per image,
    an NMS among the RoIs by loss removes near-duplicates and the ``batch_size_per_image`` hardest are kept;
    the box head then runs forward and backward on those only, with detectron2's losses, normalised over
    the kept RoIs. Inference is StandardROIHeads'.

    EventStorage gets ``ohem/*`` (see :func:`ohem.selection.ohem_scalars`). detectron2's
    ``roi_head/num_fg_samples`` and ``roi_head/num_bg_samples``, logged while labelling, count every
    labelled proposal here; ``fast_rcnn/*`` are computed on the selected RoIs.
    """

    HYPERPARAMETERS = HYPERPARAMETERS

    @configurable
    def __init__(
        self,
        *,
        positive_fraction: Optional[float] = None,
        selection_nms_thresh: Optional[float] = 0.7,
        selection_nms_per_label: bool = False,
        selection_loss: str = "cls_box",
        **kwargs,
    ):
        """
        Args:
            positive_fraction: None (the paper): no foreground ratio, the hardest RoIs whatever their
                label. A value f in (0, 1]: at most int(batch_size_per_image * f) of the kept RoIs are
                foreground, the hardest ones, and the hardest background RoIs fill the rest
                (mmdetection's OHEMSampler with its config's 0.25). A detectron2 yacs config passes its
                POSITIVE_FRACTION here, hence that behaviour; LazyConfigs set None.
            selection_nms_thresh: a RoI overlapping a harder kept RoI of the image by IoU above this is
                not selected (0.7, §4.1); None: no NMS (mmdetection).
            selection_nms_per_label: False (the paper): the NMS runs over all the RoIs of the image.
                True (the authors' code): within each label only, so RoIs of different classes, or
                foreground and background, never remove each other.
            selection_loss: the loss that ranks the RoIs: "cls_box", classification plus box regression
                (the paper's multi-task loss, the authors' code) or "cls", classification only (mmdetection).
            kwargs: :class:`StandardROIHeads` arguments; ``batch_size_per_image`` is B/N, the hardest RoIs
                kept per image.
        """
        super().__init__(positive_fraction=positive_fraction, **kwargs)
        check_ohem_options(
            batch_size_per_image=self.batch_size_per_image, selection_nms_thresh=selection_nms_thresh,
            positive_fraction=positive_fraction, selection_loss=selection_loss,
        )  # fmt: skip
        if not isinstance(selection_nms_per_label, bool):
            raise ValueError(
                f"selection_nms_per_label={selection_nms_per_label!r} must be True (NMS within each label, the "
                "authors' code) or False (over all RoIs, the paper)."
            )
        self.selection_nms_thresh = selection_nms_thresh
        self.selection_nms_per_label = selection_nms_per_label
        self.selection_loss = selection_loss

    def forward(
        self,
        images: ImageList,
        features: Dict[str, Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, Tensor]]:
        """:meth:`StandardROIHeads.forward`; in training the box, mask and keypoint heads see the RoIs
        :meth:`select_hard_proposals` keeps, in place of detectron2's random sample."""
        if not self.training:
            return super().forward(images, features, proposals, targets)
        assert targets, "'targets' argument is required during training"
        proposals = self.label_and_sample_proposals(proposals, targets)  # every proposal (_sample_proposals)
        proposals = self.select_hard_proposals(features, proposals)
        losses = self._forward_box(features, proposals)
        losses.update(self._forward_mask(features, proposals))
        losses.update(self._forward_keypoint(features, proposals))
        return proposals, losses

    def _sample_proposals(
        self, matched_idxs: Tensor, matched_labels: Tensor, gt_classes: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Every proposal the matcher does not ignore, with its class label (no random sample: OHEM
        selects among all of them, §4.1).

        Args:
            matched_idxs: (R,) the matched ground-truth index of each proposal.
            matched_labels: (R,) the matcher's label (0 background, -1 ignore, 1 foreground).
            gt_classes: (G,) the classes of the image's ground-truth boxes.

        Returns:
            (S,) indices of the proposals and (S,) their labels in [0, num_classes] (num_classes:
            background).
        """
        return label_all_proposals(matched_idxs, matched_labels, gt_classes, self.num_classes)

    @torch.no_grad()
    def readonly_losses(self, features: Dict[str, Tensor], proposals: List[Instances]) -> Tensor:
        """The paper's readonly RoI network (§4.2): the box pooler, head and predictor forward on every
        labelled proposal, without gradient, and each RoI's loss (:func:`per_roi_losses`).

        The modules stay in their training mode, as the readonly network in the authors' Caffe model (its
        dropout layers are in train mode too). detectron2's FPN box head has no dropout nor batch norm; a
        box head with BatchNorm would update its running statistics here as well.

        The pooler and box head take the RoIs in chunks of ``READONLY_CHUNK`` per image
        (:func:`d2imbalance.modeling.roi_box_features.box_head_features`: the losses are those of one pass
        over all), which bounds the pass's memory.

        Returns:
            (R,) the losses of the RoIs of all images, in the order of ``proposals``.
        """
        feature_maps = [features[f] for f in self.box_in_features]
        box_features = box_head_features(
            self.box_pooler, self.box_head, feature_maps, [p.proposal_boxes for p in proposals], READONLY_CHUNK
        )
        predictions = self.box_predictor(box_features)
        return per_roi_losses(self.box_predictor, predictions, proposals, with_box=self.selection_loss == "cls_box")

    @torch.no_grad()
    def select_hard_proposals(self, features: Dict[str, Tensor], proposals: List[Instances]) -> List[Instances]:
        """Per image, the ``batch_size_per_image`` hardest proposals after the NMS by loss (§4.1).

        Two passes, as the paper's readonly and regular RoI networks sharing their weights (§4.2): this
        readonly pass over all R proposals without gradient, then :meth:`_forward_box` with gradient on the
        B selected ones. Indexing the per-RoI losses of a single forward with gradient over all R would save
        the second forward of B RoIs, but autograd would then keep the activations of all R RoIs (the
        pooled R x C x 7 x 7 features and the fc outputs) and run the backward of the predictor, the fc
        layers and the ROIAlign over all R rows: zero gradients cost as much as real ones. A backward costs
        about two forwards, so per step the two passes cost F(R) + 3 F(B) against 3 F(R) for the single one:
        2.5 F(R) at detectron2's R ~ 1000 proposals and B = 512 per image, 1.1 F(R) at the paper's 2000 and
        64, and the activation memory scales with B instead of R. (Only when B >= R, every RoI selected,
        is the single pass cheaper; R ~ 1000 + G > 512 on COCO, 500 + G > 128 on shapes.) The README gives a
        CPU timing of both.

        Args:
            features: the feature maps, as :meth:`forward` gets them.
            proposals: per image, every labelled proposal (:meth:`label_and_sample_proposals`).

        Returns:
            per image, the selected proposals, hardest first, with their ``gt_*`` fields.
        """
        losses = self.readonly_losses(features, proposals)
        selected, stats = [], []
        for props, loss in zip(proposals, losses.split([len(p) for p in proposals])):  # a loop over images
            positive = (props.gt_classes >= 0) & (props.gt_classes < self.num_classes)
            ranking = hard_example_ranking(
                loss, props.proposal_boxes.tensor, nms_thresh=self.selection_nms_thresh,
                groups=props.gt_classes if self.selection_nms_per_label else None,
            )  # fmt: skip
            keep = take_hardest(
                ranking, self.batch_size_per_image, positive=positive, positive_fraction=self.positive_fraction
            )
            stats.append(selection_statistics(loss, positive, ranking, keep))
            selected.append(props[keep])
        scalars = ohem_scalars(torch.stack(stats).sum(dim=0))
        get_event_storage().put_scalars(**{f"ohem/{k}": v for k, v in scalars.items()})
        return selected

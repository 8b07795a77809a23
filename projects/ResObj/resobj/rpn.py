"""FasterRCNN-ResObj: an RPN whose random 256-anchor sampling is replaced by residual objectness
(paper §4.1, Table 3). Works inside detectron2's GeneralizedRCNN with the standard ROI heads.

Importing this module registers ``ResObjRPN`` in ``PROPOSAL_GENERATOR_REGISTRY`` and ``ResObjRPNHead``
in ``RPN_HEAD_REGISTRY``, so yacs configs can also use them (MODEL.PROPOSAL_GENERATOR.NAME,
MODEL.RPN.HEAD_NAME) with the constructor defaults below.
"""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from d2imbalance._compat import require_detectron2

from .cascade import HYPERPARAMETERS, final_objectness
from .head import prior_bias
from .loss import PositiveCountNormalizer, check_cascade_head, check_cascade_options, objectness_loss_sums

require_detectron2("resobj.rpn")
from detectron2.config import configurable  # noqa: E402
from detectron2.layers import cat  # noqa: E402
from detectron2.modeling.box_regression import _dense_box_regression_loss  # noqa: E402
from detectron2.modeling.proposal_generator.build import PROPOSAL_GENERATOR_REGISTRY  # noqa: E402
from detectron2.modeling.proposal_generator.rpn import RPN, RPN_HEAD_REGISTRY, StandardRPNHead  # noqa: E402
from detectron2.structures import Boxes, ImageList, Instances  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

__all__ = ["ResObjRPN", "ResObjRPNHead", "RPN_NORMALIZERS"]

RPN_NORMALIZERS = ("batch_size", "num_pos")


@RPN_HEAD_REGISTRY.register()
class ResObjRPNHead(StandardRPNHead):
    """:class:`StandardRPNHead` plus T residual objectness subnets.

    The RPN's own objectness predictor (a 1x1 conv on the shared 3x3 conv feature) gives o_0. Residual
    subnet t reads the same shared feature (detached under ``isolate_residual_grad``, Table 2a) through a
    1x1 conv + ReLU and a 1x1 conv with A outputs, mirroring the RPN's 1x1 predictors: a 3x3 hidden conv
    at full width would cost as much as the RPN conv itself on P2 for every step.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_anchors: int,
        box_dim: int = 4,
        conv_dims: List[int] = (-1,),
        num_steps: int = 2,
        residual_conv_dim: int = 256,
        isolate_residual_grad: bool = True,
        objectness_prior: float = 0.01,
        residual_prior: Optional[float] = None,
    ):
        """
        Args:
            in_channels, num_anchors, box_dim, conv_dims: as in :class:`StandardRPNHead` (A = num_anchors).
            num_steps: T, the number of residual steps (T=0: an RPN trained without sampling).
            residual_conv_dim: channels of each residual subnet's hidden 1x1 conv.
            isolate_residual_grad: detach the residual subnets' input and, in the cascade, o_{t-1}.
            objectness_prior: initial sigmoid(o_0). detectron2 initialises the RPN bias at 0
                (P = 0.5), which suits a balanced 256-anchor sample; without sampling all ~100k anchors
                take part, so the biased initialisation of [13] keeps the first losses finite-sized.
            residual_prior: initial sigmoid(r_t); None = bias 0 (r_t starts at 0).
        """
        super().__init__(in_channels=in_channels, num_anchors=num_anchors, box_dim=box_dim, conv_dims=conv_dims)
        if num_steps < 0:
            raise ValueError(f"num_steps={num_steps} must be >= 0.")
        self.num_steps = num_steps
        self.isolate_residual_grad = isolate_residual_grad
        hidden = self.objectness_logits.in_channels
        self.res_subnets = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(hidden, residual_conv_dim, kernel_size=1), nn.ReLU())
                for _ in range(num_steps)
            ]
        )
        self.res_scores = nn.ModuleList(
            [nn.Conv2d(residual_conv_dim, num_anchors, kernel_size=1) for _ in range(num_steps)]
        )
        for layer in list(self.res_subnets.modules()) + list(self.res_scores.modules()):
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0.0)
        nn.init.constant_(self.objectness_logits.bias, prior_bias(objectness_prior))
        if residual_prior is not None:
            for score in self.res_scores:
                nn.init.constant_(score.bias, prior_bias(residual_prior))

    def forward(self, features: List[Tensor]):
        """
        Args:
            features: L maps (N, C, Hi, Wi).

        Returns:
            A tuple of 2 + T lists of L tensors: o_0 (N, A, Hi, Wi), deltas (N, A*box_dim, Hi, Wi), and
            r_1..r_T (N, A, Hi, Wi) each.
        """
        objectness, deltas = [], []
        residuals: List[List[Tensor]] = [[] for _ in range(self.num_steps)]
        for x in features:
            t = self.conv(x)
            objectness.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
            res_in = t.detach() if self.isolate_residual_grad else t
            for step in range(self.num_steps):
                residuals[step].append(self.res_scores[step](self.res_subnets[step](res_in)))
        return (objectness, deltas, *residuals)


@PROPOSAL_GENERATOR_REGISTRY.register()
class ResObjRPN(RPN):
    """RPN trained with residual objectness instead of random sampling (FasterRCNN-ResObj, Table 3).

    - Labels: every anchor keeps its matcher label (1 / 0 / -1); nothing is subsampled, so all valid
      anchors enter the objectness loss. ``positive_fraction`` is unused.
    - Losses: "loss_rpn_cls" is L_obj on o_0, "loss_rpn_res_t{t}" the cascade losses L_t (Algorithm 1),
      "loss_rpn_loc" the box loss on positives.
    - Normaliser (``loss_normalizer``; the paper does not give one): by default all terms are divided
      by detectron2's RPN normaliser, ``batch_size_per_image`` x images (256 N), so each positive anchor
      weighs exactly what it weighs in the sampled RPN and the RPN/ROI-head loss balance of the recipe
      is kept; the negatives, now all present, are kept small by the 0.01 objectness prior and then by
      learning. "num_pos" divides by the EMA of the positive count as RetinaNet does; RPN positives
      (IoU >= 0.7) are few, so this multiplies the RPN losses by ~10 against the ROI heads.
    - Proposals are ranked by the final objectness o_T = o_0 + sum_t r_t and carry it as
      ``objectness_logits``.
    """

    # T only: the sampling's batch size and positive fraction are gone (batch_size_per_image survives
    # as a loss normaliser, not counted).
    HYPERPARAMETERS = HYPERPARAMETERS

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        head: nn.Module,
        anchor_generator: nn.Module,
        anchor_matcher,
        box2box_transform,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_topk: Tuple[float, float],
        post_nms_topk: Tuple[float, float],
        nms_thresh: float = 0.7,
        min_box_size: float = 0.0,
        anchor_boundary_thresh: float = -1.0,
        loss_weight=1.0,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
        cascade_mode: str = "paper",
        gate: str = "image",
        loss_normalizer: str = "batch_size",
        loss_normalizer_momentum: float = 0.9,
        loss_normalizer_init: float = 100.0,
        num_pos_all_reduce: bool = True,
    ):
        """
        Args:
            head: a :class:`ResObjRPNHead` (attributes ``num_steps``, ``isolate_residual_grad``).
            cascade_mode, gate: see :class:`resobj.RetinaNetResObj` ("official" = one BCE on the sum).
            loss_normalizer: "batch_size" (``batch_size_per_image`` x images, default) or "num_pos".
            loss_normalizer_momentum, loss_normalizer_init, num_pos_all_reduce: for "num_pos", see
                :class:`resobj.loss.PositiveCountNormalizer`.
            batch_size_per_image: no sampling happens; only the "batch_size" normaliser uses it.
            positive_fraction: accepted for config compatibility with :class:`RPN`, unused.
            Other arguments: as in :class:`RPN`.
        """
        super().__init__(
            in_features=in_features,
            head=head,
            anchor_generator=anchor_generator,
            anchor_matcher=anchor_matcher,
            box2box_transform=box2box_transform,
            batch_size_per_image=batch_size_per_image,
            positive_fraction=positive_fraction,
            pre_nms_topk=pre_nms_topk,
            post_nms_topk=post_nms_topk,
            nms_thresh=nms_thresh,
            min_box_size=min_box_size,
            anchor_boundary_thresh=anchor_boundary_thresh,
            loss_weight=loss_weight,
            box_reg_loss_type=box_reg_loss_type,
            smooth_l1_beta=smooth_l1_beta,
        )
        check_cascade_options(cascade_mode, gate)
        check_cascade_head(head, cascade_mode, "ResObjRPNHead")
        if loss_normalizer not in RPN_NORMALIZERS:
            raise ValueError(f"loss_normalizer={loss_normalizer!r} is not one of {RPN_NORMALIZERS}.")
        self.cascade_mode = cascade_mode
        self.gate = gate
        self.loss_normalizer = loss_normalizer
        self.num_pos_normalizer = PositiveCountNormalizer(
            momentum=loss_normalizer_momentum, all_reduce=num_pos_all_reduce, initial=loss_normalizer_init
        )

    def _subsample_labels(self, label: Tensor) -> Tensor:
        """No random sampling: every anchor keeps its matcher label (the one change of Table 3)."""
        return label

    def _flatten(self, x: Tensor, dim: int) -> Tensor:
        """(N, A*dim, Hi, Wi) -> (N, Hi*Wi*A, dim), the anchor order of the anchor generator."""
        n, _, h, w = x.shape
        return x.view(n, -1, dim, h, w).permute(0, 3, 4, 1, 2).flatten(1, -2)

    def forward(
        self,
        images: ImageList,
        features: Dict[str, Tensor],
        gt_instances: Optional[List[Instances]] = None,
    ):
        """Same contract as :meth:`RPN.forward`; proposals are ranked by the final objectness o_T."""
        features = [features[f] for f in self.in_features]
        anchors = self.anchor_generator(features)
        objectness, deltas, *residuals = self.rpn_head(features)
        assert len(residuals) == self.rpn_head.num_steps, (len(residuals), self.rpn_head.num_steps)
        # (N, Hi*Wi*A) logits and (N, Hi*Wi*A, B) deltas per level, as RPN.forward lays them out.
        objectness = [self._flatten(x, 1).squeeze(2) for x in objectness]
        residuals = [[self._flatten(x, 1).squeeze(2) for x in r] for r in residuals]
        deltas = [self._flatten(x, self.anchor_generator.box_dim) for x in deltas]

        if self.training:
            assert gt_instances is not None, "ResObjRPN requires gt_instances in training!"
            gt_labels, gt_boxes = self.label_and_sample_anchors(anchors, gt_instances)
            losses = self.losses(anchors, objectness, gt_labels, deltas, gt_boxes, residuals)
        else:
            losses = {}
        # predict_proposals runs under no_grad: proposals are fixed for the ROI heads, as in RPN.
        final = [final_objectness(o, [r[lvl] for r in residuals]) for lvl, o in enumerate(objectness)]
        proposals = self.predict_proposals(anchors, final, deltas, images.image_sizes)
        return proposals, losses

    def losses(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[Tensor],
        gt_labels: List[Tensor],
        pred_anchor_deltas: List[Tensor],
        gt_boxes: List[Tensor],
        pred_residuals: List[List[Tensor]] = (),
    ) -> Dict[str, Tensor]:
        """
        Args:
            pred_objectness_logits: L tensors (N, Hi*Wi*A), o_0.
            gt_labels: N tensors (R,) in {1, 0, -1}, not subsampled.
            pred_anchor_deltas: L tensors (N, Hi*Wi*A, B).
            pred_residuals: T lists of L tensors (N, Hi*Wi*A), r_1..r_T.
            anchors, gt_boxes: as in :meth:`RPN.losses`.

        Returns:
            "loss_rpn_cls", "loss_rpn_loc", and in paper mode "loss_rpn_res_t1".."loss_rpn_res_tT".
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        pos_mask = gt_labels == 1
        num_pos = pos_mask.sum()
        if self.loss_normalizer == "num_pos":
            normalizer = self.num_pos_normalizer(num_pos)
        else:
            normalizer = float(self.batch_size_per_image * num_images)
        storage = get_event_storage()
        storage.put_scalar("rpn/num_pos_anchors", num_pos.item() / num_images)
        storage.put_scalar("rpn/num_neg_anchors", (gt_labels == 0).sum().item() / num_images)
        storage.put_scalar("rpn_resobj/loss_normalizer", normalizer)

        loss_loc = _dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            pos_mask,
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )
        sums = objectness_loss_sums(
            cat(pred_objectness_logits, dim=1),
            [cat(r, dim=1) for r in pred_residuals],
            gt_labels,
            cascade_mode=self.cascade_mode,
            gate=self.gate,
            detach=self.rpn_head.isolate_residual_grad,
            log_prefix="train/rpn_resobj/",
        )
        losses = {"loss_rpn_cls": sums.pop("obj"), "loss_rpn_loc": loss_loc}
        losses.update({f"loss_rpn_{k}": v for k, v in sums.items()})
        cls_weight = self.loss_weight.get("loss_rpn_cls", 1.0)
        return {k: v / normalizer * self.loss_weight.get(k, cls_weight) for k, v in losses.items()}

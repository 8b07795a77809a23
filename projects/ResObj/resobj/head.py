"""RetinaNet head with an objectness subnet and T residual objectness subnets (paper Figs. 1 and 3b)."""
import math
from typing import List, Optional

import torch
from torch import Tensor, nn

from d2imbalance._compat import require_detectron2

require_detectron2("resobj.head")
from detectron2.layers import CycleBatchNormList, ShapeSpec, get_norm  # noqa: E402
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead  # noqa: E402

__all__ = ["ResObjHead", "RESIDUAL_INPUTS", "group_norm", "prior_bias"]

#: Where the residual subnets read their input (Table 2b): the objectness subnet's hidden feature
#: (default, 35.2 AP) or the class tower's output (35.0 AP).
RESIDUAL_INPUTS = ("objectness", "class")


def prior_bias(prior: float) -> float:
    """Bias b with sigmoid(b) = prior (the biased initialisation of RetinaNet [13])."""
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior probability {prior} must be in (0, 1).")
    return -math.log((1.0 - prior) / prior)


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with at most ``max_groups`` groups (detectron2's 32) and at least 2 channels per group.

    detectron2's ``get_norm("GN", C)`` always uses 32 groups, so at C = 32 every group is one channel. On
    a 1x1 map (P7 of a lone image of <= 128 px, e.g. at evaluation with one image per batch) such a group
    holds a single value, whose variance is undefined: torch raises "Expected more than 1 value per
    channel". Two channels per group keep every group's statistics defined for any input size.
    """
    groups = max((g for g in range(1, max_groups + 1) if channels % g == 0 and channels // g >= 2), default=1)
    return nn.GroupNorm(groups, channels)


def _init_conv(conv: nn.Conv2d, bias: float = 0.0) -> None:
    nn.init.normal_(conv.weight, mean=0.0, std=0.01)
    nn.init.constant_(conv.bias, bias)


class ResObjHead(RetinaNetHead):
    """:class:`RetinaNetHead` plus an objectness subnet and T residual subnets.

    Layout (per FPN level, shared across levels like the rest of the head)::

        feature -> cls_subnet -> f_c -> cls_score                      -> class logits (N, A*K, H, W)
                                 f_c -> obj_subnet (3x3 conv + ReLU) -> f_o -> obj_score -> o_0 (N, A, H, W)
        f_o (or f_c, Table 2b) -> [detach] -> res_subnets[t] (3x3 conv + ReLU) -> res_scores[t] -> r_t
        feature -> bbox_subnet -> bbox_pred                              -> box deltas (N, A*4, H, W)

    ``obj_score`` and ``res_scores`` are 3x3 convs with A outputs, as in the paper's "two convolutional
    layers" (§3.1) and the authors' code. With ``num_steps=0`` this is the RetinaNet-Obj head (Fig. 1).
    The parameter names of :class:`RetinaNetHead` are kept, so a RetinaNet checkpoint loads into this
    head with only the new branches (obj_*, res_*) missing.
    """

    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        num_anchors: int,
        conv_dims: List[int],
        norm: str = "",
        num_steps: int = 2,
        objectness_conv_dim: int = 128,
        residual_input: str = "objectness",
        isolate_residual_grad: bool = True,
        objectness_prior: float = 0.01,
        class_prior: Optional[float] = None,
        residual_prior: Optional[float] = None,
    ):
        """
        Args:
            input_shape, num_anchors, conv_dims, norm: as in :class:`RetinaNetHead` (A = num_anchors).
            num_classes: K.
            num_steps: T, the number of residual steps (Table 2c: T=2 best; T=0 is RetinaNet-Obj).
            objectness_conv_dim: channels of the hidden 3x3 conv of the objectness subnet and of each
                residual subnet. The paper does not give it (Table 2c reports T=2 costing ~1% FPS); the
                authors' code uses the tower width (256), which adds ~17% to the R50-FPN RetinaNet
                FLOPs at T=2, against ~6% at 128 (fvcore count, 320x320).
            residual_input: "objectness" (default) or "class": the feature the residual subnets read
                (Table 2b).
            isolate_residual_grad: detach the residual subnets' input feature, so the residual losses do
                not reach the objectness subnet or the towers (Table 2a, "Not to Objectness"). The
                cascade detaches o_{t-1} under the same switch (the detector reads this attribute).
            objectness_prior: initial sigmoid(o_0) (§3.1: ~0.01; authors' code: 0.001).
            class_prior: initial P(class | obj); None means 1/K (§3.1 and the authors' code).
            residual_prior: initial sigmoid(r_t); None means bias 0, so r_t starts at 0 and o_t = o_{t-1}
                (the "each r_t ~ 0" limit of §3.2); the authors' code uses 0.001.
        """
        if num_steps < 0:
            raise ValueError(f"num_steps={num_steps} must be >= 0 (0 gives RetinaNet-Obj).")
        if residual_input not in RESIDUAL_INPUTS:
            raise ValueError(f"residual_input={residual_input!r} is not one of {RESIDUAL_INPUTS}.")
        if class_prior is None:
            class_prior = 1.0 / num_classes
        super().__init__(
            input_shape=input_shape,
            num_classes=num_classes,
            num_anchors=num_anchors,
            conv_dims=conv_dims,
            norm=norm,
            prior_prob=class_prior,
        )
        self.num_steps = num_steps
        self.residual_input = residual_input
        self.isolate_residual_grad = isolate_residual_grad

        tower_dim = conv_dims[-1]
        res_in_dim = objectness_conv_dim if residual_input == "objectness" else tower_dim
        self.obj_subnet = self._hidden_conv(tower_dim, objectness_conv_dim, norm)
        self.obj_score = nn.Conv2d(objectness_conv_dim, num_anchors, kernel_size=3, stride=1, padding=1)
        self.res_subnets = nn.ModuleList(
            [self._hidden_conv(res_in_dim, objectness_conv_dim, norm) for _ in range(num_steps)]
        )
        self.res_scores = nn.ModuleList(
            [
                nn.Conv2d(objectness_conv_dim, num_anchors, kernel_size=3, stride=1, padding=1)
                for _ in range(num_steps)
            ]
        )
        for module in [self.obj_subnet, self.obj_score, self.res_subnets, self.res_scores]:
            for layer in module.modules():
                if isinstance(layer, nn.Conv2d):
                    _init_conv(layer)
        _init_conv(self.obj_score, prior_bias(objectness_prior))
        res_bias = 0.0 if residual_prior is None else prior_bias(residual_prior)
        for score in self.res_scores:
            _init_conv(score, res_bias)

    def _hidden_conv(self, in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
        """3x3 conv (+ the towers' norm; GN with >= 2 channels per group, see :func:`group_norm`) + ReLU."""
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)]
        if norm in ("BN", "SyncBN"):
            # Per-level BN statistics, as RetinaNetHead does for its towers.
            bn_class = nn.BatchNorm2d if norm == "BN" else nn.SyncBatchNorm
            layers.append(CycleBatchNormList(length=self._num_features, bn_class=bn_class, num_features=out_channels))
        elif norm == "GN":
            layers.append(group_norm(out_channels))
        elif norm:
            layers.append(get_norm(norm, out_channels))
        layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def forward(self, features: List[Tensor]):
        """
        Args:
            features: L FPN maps (N, C, Hi, Wi), high to low resolution.

        Returns:
            A tuple of 3 + T lists of L tensors each: class logits (N, A*K, Hi, Wi), box deltas
            (N, A*4, Hi, Wi), objectness logits o_0 (N, A, Hi, Wi), and residual logits r_1..r_T
            (N, A, Hi, Wi) each.
        """
        assert len(features) == self._num_features, (len(features), self._num_features)
        logits, bbox_reg, objectness = [], [], []
        residuals: List[List[Tensor]] = [[] for _ in range(self.num_steps)]
        for feature in features:
            cls_feature = self.cls_subnet(feature)
            logits.append(self.cls_score(cls_feature))
            bbox_reg.append(self.bbox_pred(self.bbox_subnet(feature)))
            obj_feature = self.obj_subnet(cls_feature)
            objectness.append(self.obj_score(obj_feature))
            if self.num_steps:
                res_feature = obj_feature if self.residual_input == "objectness" else cls_feature
                if self.isolate_residual_grad:
                    res_feature = res_feature.detach()
                for t in range(self.num_steps):
                    residuals[t].append(self.res_scores[t](self.res_subnets[t](res_feature)))
        return (logits, bbox_reg, objectness, *residuals)

"""RetinaNet head plus one object-confidence output (paper §3.1, Fig. 3b and 3d)."""

from typing import List, Tuple

from torch import Tensor, nn

from d2imbalance._compat import require_detectron2

require_detectron2("objconf.head")

from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead  # noqa: E402

__all__ = ["RetinaNetConfHead", "IoUAwareRetinaNetHead", "CONF_TOWERS"]

CONF_TOWERS = ("cls", "box")


class RetinaNetConfHead(RetinaNetHead):
    """:class:`RetinaNetHead` with an object-confidence branch: a 3x3 conv with A outputs.

    On the classification tower (``conf_tower="cls"``) this is RetinaNet-Conf (Fig. 3d); on the box
    tower (``conf_tower="box"``, or :class:`IoUAwareRetinaNetHead`) it is the IoU-aware RetinaNet the
    paper compares against (Fig. 3b, Tables 1 and 5). The conv is initialised like RetinaNet's box
    predictor: weights N(0, 0.01), bias 0, so every confidence starts at sigmoid(0) = 0.5.
    """

    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        conv_dims: List[int],
        num_anchors: int,
        conf_tower: str = "cls",
        **kwargs,
    ):
        """
        Args:
            input_shape, conv_dims, num_anchors, **kwargs: as in :class:`RetinaNetHead`
                (``num_classes``, ``norm``, ``prior_prob``).
            conf_tower: ``"cls"`` (RetinaNet-Conf) or ``"box"`` (IoU-aware RetinaNet): the tower whose
                output feeds the confidence conv.
        """
        if conf_tower not in CONF_TOWERS:
            raise ValueError(
                f"conf_tower={conf_tower!r} must be one of {CONF_TOWERS}: 'cls' for "
                "RetinaNet-Conf, 'box' for IoU-aware RetinaNet."
            )
        super().__init__(
            input_shape=input_shape, conv_dims=conv_dims, num_anchors=num_anchors, **kwargs
        )
        self.conf_tower = conf_tower
        self.conf_pred = nn.Conv2d(conv_dims[-1], num_anchors, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.conf_pred.weight, mean=0, std=0.01)
        nn.init.constant_(self.conf_pred.bias, 0)

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """
        Args:
            features: L feature maps, each (N, C, Hi, Wi).

        Returns:
            logits: L tensors (N, A*K, Hi, Wi), class logits.
            bbox_reg: L tensors (N, A*4, Hi, Wi), box deltas.
            conf: L tensors (N, A, Hi, Wi), object-confidence logits.
        """
        assert len(features) == self._num_features, (len(features), self._num_features)
        logits, bbox_reg, conf = [], [], []
        on_cls_tower = self.conf_tower == "cls"
        for feature in features:
            cls_feature = self.cls_subnet(feature)
            box_feature = self.bbox_subnet(feature)
            logits.append(self.cls_score(cls_feature))
            bbox_reg.append(self.bbox_pred(box_feature))
            conf.append(self.conf_pred(cls_feature if on_cls_tower else box_feature))
        return logits, bbox_reg, conf


class IoUAwareRetinaNetHead(RetinaNetConfHead):
    """IoU-aware RetinaNet head (the paper's ref. [23], Fig. 3b): the IoU branch on the box tower."""

    def __init__(self, *, conf_tower: str = "box", **kwargs):
        super().__init__(conf_tower=conf_tower, **kwargs)

"""YOLOv3-ResObj (paper §4.1 and Table 3): YOLOv3's objectness replaced by the residual objectness cascade.

"YOLOv3 already has an objectness module ... we replace it by our residual objectness. In this case,
while the step T = 0, the residual objectness is the same as the original objectness." Here o_0 is
YOLOv3's own objectness output and each residual step t adds, per output of the head, a small subnet
giving r_t per anchor; :func:`resobj.loss.objectness_loss_sums` runs the cascade of ``cascade.py`` on
the (N, R) logits with YOLOv3's labels (1 assigned, 0 negative, -1 for predictions above
``ignore_thresh``). Like every YOLOv3 loss, the objectness terms are sums divided by the number of
images, so with T = 0 the model is YOLOv3 exactly (same parameters, losses and detections).

The paper gives no layout for YOLOv3's residual subnets. Each is a 1x1 convolution (BatchNorm,
LeakyReLU, ``residual_conv_dim`` channels) and a 1x1 convolution with one output per anchor, on every
output of the head, as the ResObj RPN's (``rpn.py``): a 3x3 convolution at the head's width would cost
as much as YOLOv3's own 3x3 head convolution per step, against the paper's ~1 % FPS.
"""
from typing import Dict, List, Optional

from torch import Tensor, nn

from d2imbalance._compat import require_detectron2

from .cascade import HYPERPARAMETERS, final_objectness
from .loss import check_cascade_head, check_cascade_options, objectness_loss_sums

require_detectron2("resobj.yolov3")
from detectron2.layers import ShapeSpec  # noqa: E402

from d2imbalance.modeling.darknet import DarknetConv, darknet_init  # noqa: E402
from d2imbalance.modeling.yolov3 import YOLOv3, YOLOv3Head  # noqa: E402

__all__ = ["YOLOv3ResObjHead", "YOLOv3ResObj", "YOLO_RESIDUAL_INPUTS"]

#: The feature the residual subnets read (Table 2b's switch): "objectness", the map YOLOv3's
#: prediction convolution (hence o_0) reads; "route", the block output one 3x3 convolution earlier,
#: which yolov3.cfg routes to the next output, the counterpart of RetinaNet's class tower.
YOLO_RESIDUAL_INPUTS = ("objectness", "route")


class YOLOv3ResObjHead(YOLOv3Head):
    """:class:`YOLOv3Head` plus T residual subnets on each of its outputs."""

    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        num_anchors: int = 3,
        num_steps: int = 2,
        residual_conv_dim: int = 128,
        residual_input: str = "objectness",
        isolate_residual_grad: bool = True,
    ):
        """
        Args:
            input_shape, num_classes, num_anchors: as in :class:`YOLOv3Head`.
            num_steps: T (0 is YOLOv3; the paper's RetinaNet ablation, Table 2c, found T = 2 best, and
                it gives no T for YOLOv3).
            residual_conv_dim: channels of each residual subnet's hidden 1x1 convolution.
            residual_input: see :data:`YOLO_RESIDUAL_INPUTS`.
            isolate_residual_grad: detach the residual subnets' input and, in the cascade, o_{t-1}
                (Table 2a, "Not to Objectness").
        """
        super().__init__(input_shape=input_shape, num_classes=num_classes, num_anchors=num_anchors)
        if num_steps < 0:
            raise ValueError(f"num_steps={num_steps} must be >= 0 (0 gives YOLOv3).")
        if residual_input not in YOLO_RESIDUAL_INPUTS:
            raise ValueError(f"residual_input={residual_input!r} is not one of {YOLO_RESIDUAL_INPUTS}.")
        self.num_steps = num_steps
        self.residual_input = residual_input
        self.isolate_residual_grad = isolate_residual_grad
        # Per output, finest first: the channels of the head map and of the route map.
        read = [c if residual_input == "objectness" else c // 2 for c in self.in_channels]
        self.res_subnets = nn.ModuleList(
            nn.ModuleList(DarknetConv(c, residual_conv_dim, 1) for c in read) for _ in range(num_steps)
        )
        self.res_scores = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(residual_conv_dim, num_anchors, 1) for _ in read) for _ in range(num_steps)
        )
        for scores in self.res_scores:
            for conv in scores:
                darknet_init(conv)  # bias 0: r_t starts near 0, o_t near o_{t-1}

    def forward(self, features: List[Tensor]):
        """
        Returns:
            (maps, r_1, ..., r_T): maps as :meth:`YOLOv3Head.forward`; each r_t a list, finest output
            first, of (N, A, Hi, Wi) residual logits.
        """
        routes = self.routes(features)
        preds = (self.pred3, self.pred4, self.pred5)
        maps = [pred(head) for pred, (_, head) in zip(preds, routes)]
        residuals: List[List[Tensor]] = [[] for _ in range(self.num_steps)]
        for level, (route, head) in enumerate(routes):
            feature = head if self.residual_input == "objectness" else route
            if self.isolate_residual_grad:
                feature = feature.detach()
            for t in range(self.num_steps):
                residuals[t].append(self.res_scores[t][level](self.res_subnets[t][level](feature)))
        return (maps, *residuals)


class YOLOv3ResObj(YOLOv3):
    """YOLOv3 whose objectness loss is the residual objectness cascade (Algorithm 1) and whose test
    objectness is o_T = o_0 + r_1 + ... + r_T."""

    HYPERPARAMETERS = YOLOv3.HYPERPARAMETERS + HYPERPARAMETERS  # YOLOv3's own (none) and T

    def __init__(
        self,
        *,
        cascade_mode: str = "paper",
        gate: str = "image",
        test_objectness_step: Optional[int] = None,
        **kwargs,
    ):
        """
        Args:
            cascade_mode: "paper" (Algorithm 1: gated steps, one loss each) or "official" (one BCE on
                o_0 + sum_t r_t, nothing gated or detached; the authors' RetinaNet code, needs
                ``head.isolate_residual_grad=False``).
            gate: "image" or "batch", the scope of the positives' minimum (``cascade.py``).
            test_objectness_step: score with o_t of this step at test time (None: o_T), for Fig. 4.
            kwargs: as :class:`~d2imbalance.modeling.yolov3.YOLOv3`; ``head`` a :class:`YOLOv3ResObjHead`.
        """
        super().__init__(**kwargs)
        check_cascade_options(cascade_mode, gate)
        check_cascade_head(self.head, cascade_mode, "YOLOv3ResObjHead")
        self.cascade_mode = cascade_mode
        self.gate = gate
        self.test_objectness_step = test_objectness_step

    def prediction_maps(self, predictions) -> List[Tensor]:
        return predictions[0]

    def split_predictions(self, predictions):
        maps, *residual_maps = predictions
        assert len(residual_maps) == self.head.num_steps, (len(residual_maps), self.head.num_steps)
        outputs = self.flatten_outputs(maps, 5 + self.num_classes)
        return outputs, [self.flatten_outputs(r, 1).squeeze(2) for r in residual_maps]

    def objectness_losses(self, objectness: Tensor, residuals: List[Tensor], labels: Tensor) -> Dict[str, Tensor]:
        """L_obj on o_0 and, in paper mode, L_1 .. L_T (sums; :meth:`YOLOv3.losses` divides by N)."""
        sums = objectness_loss_sums(
            objectness,
            residuals,
            labels,
            cascade_mode=self.cascade_mode,
            gate=self.gate,
            detach=self.head.isolate_residual_grad,
            log_prefix="train/resobj/",
        )
        return {f"loss_{name}": value for name, value in sums.items()}

    def inference_objectness(self, objectness: Tensor, residuals: List[Tensor]) -> Tensor:
        return final_objectness(objectness, residuals, step=self.test_objectness_step)

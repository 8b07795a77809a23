"""FocalFreeRetinaNet, the base of the RetinaNet methods without a focal loss: it refuses focal-loss
arguments, drops their attributes, and its box loss follows the model's settings (hand-computed)."""
import math

import pytest
import torch

from tiny_retinanet import tiny_retinanet_parts

pytestmark = pytest.mark.detectron2


def one_anchor_case():
    """Anchor (0, 0, 10, 10), ground truth (1, 1, 11, 11), predicted deltas 0: with unit weights the target
    deltas are (0.1, 0.1, 0, 0) and the predicted box is the anchor."""
    from detectron2.structures import Boxes

    anchors = [Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]))]
    pred_deltas = [torch.zeros(1, 1, 4)]
    gt_boxes = [torch.tensor([[1.0, 1.0, 11.0, 11.0]])]
    return anchors, pred_deltas, gt_boxes, torch.ones(1, 1, dtype=torch.bool)


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({}, 0.2),  # L1 (beta 0): |0.1| + |0.1|
        ({"smooth_l1_beta": 0.5}, 2 * 0.5 * 0.1**2 / 0.5),  # smooth L1 below beta: 0.5 x^2 / beta each
        ({"box_reg_loss_type": "giou"}, 1 - 81 / 119 + (121 - 119) / 121),  # 1 - IoU + (C - U) / C
    ],
)
def test_box_regression_loss_follows_the_models_settings(settings, expected):
    from d2imbalance.modeling import FocalFreeRetinaNet

    model = FocalFreeRetinaNet(**tiny_retinanet_parts(), **settings)
    assert model.box_regression_loss(*one_anchor_case()).item() == pytest.approx(expected, rel=1e-5)
    anchors, deltas, gt, pos = one_anchor_case()
    assert model.box_regression_loss(anchors, deltas, gt, ~pos).item() == 0.0  # no positive anchor, no loss


def test_focal_loss_arguments_are_refused_and_their_attributes_dropped():
    from d2imbalance.modeling import FocalFreeRetinaNet

    class Method(FocalFreeRetinaNet):
        pass

    with pytest.raises(ValueError, match=r"Method has no focal loss; remove model.focal_loss_alpha, "
                                         r"model.focal_loss_gamma from the config"):  # fmt: skip
        Method(**tiny_retinanet_parts(), focal_loss_alpha=0.25, focal_loss_gamma=2.0)
    with pytest.raises(ValueError, match=r"remove model.focal_loss_gamma from"):
        Method(**tiny_retinanet_parts(), focal_loss_gamma=0.0)
    model = Method(**tiny_retinanet_parts(), test_score_thresh=0.2)
    assert not hasattr(model, "focal_loss_alpha") and not hasattr(model, "focal_loss_gamma")
    assert model.test_score_thresh == 0.2 and model.num_classes == 3  # the other arguments reach RetinaNet
    assert math.isclose(model.head.cls_score.bias[0].item(), -math.log(99), rel_tol=1e-6)  # prior 0.01

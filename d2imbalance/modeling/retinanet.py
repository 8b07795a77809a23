"""detectron2's RetinaNet without its focal loss: the base of every method that replaces that loss.

Residual objectness, GHM-C, AP-Loss, DR Loss and Sampling-Free each swap RetinaNet's classification
loss and keep the rest (head, anchors, matcher, box loss, inference). What they share lives here so
that each subclass states only its method: the model refuses focal-loss arguments (a config that
still sets them would silently train a different loss than the one it names), drops the attributes
RetinaNet stores for them, and offers RetinaNet's box loss with the model's own settings.
"""
from torch import Tensor

from detectron2.modeling.box_regression import _dense_box_regression_loss
from detectron2.modeling.meta_arch.retinanet import RetinaNet

__all__ = ["FocalFreeRetinaNet", "FOCAL_LOSS_ARGUMENTS"]

#: RetinaNet's constructor arguments that only the focal loss uses.
FOCAL_LOSS_ARGUMENTS = ("focal_loss_alpha", "focal_loss_gamma")


class FocalFreeRetinaNet(RetinaNet):
    """:class:`RetinaNet` for a subclass that replaces the focal loss in ``losses``.

    Args:
        kwargs: :class:`RetinaNet`'s arguments, without ``focal_loss_alpha`` / ``focal_loss_gamma``.

    Raises:
        ValueError: a focal-loss argument was given; the message names the config keys to delete.
    """

    def __init__(self, **kwargs):
        focal = [k for k in FOCAL_LOSS_ARGUMENTS if k in kwargs]
        if focal:
            raise ValueError(
                f"{type(self).__name__} has no focal loss; remove {', '.join('model.' + k for k in focal)} from "
                "the config (e.g. `del model.focal_loss_alpha`)."
            )
        super().__init__(**kwargs)
        del self.focal_loss_alpha, self.focal_loss_gamma

    def box_regression_loss(self, anchors, pred_anchor_deltas, gt_boxes, pos_mask) -> Tensor:
        """RetinaNet's box loss (``box_reg_loss_type``, ``smooth_l1_beta``), summed over the positive
        anchors of ``pos_mask`` (N, R) and not normalised: each method divides it by its own count."""
        return _dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            pos_mask,
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )

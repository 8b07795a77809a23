"""Gradient clipping for the LazyConfig trainers, which have none (detectron2's SOLVER.CLIP_GRADIENTS is
read by the yacs trainer only).

``train.grad_clip = dict(enabled=False, max_norm=35.0, norm_type=2.0)``. When enabled, the gradients of all
parameters, taken as one vector, are scaled down to ``max_norm`` between the backward pass and the
optimizer step: mmdetection's ``optimizer_config.grad_clip`` (``torch.nn.utils.clip_grad_norm_`` over
every parameter with a gradient), which its RetinaNet and GHM recipes set to max_norm=35. The norm
before clipping is logged as ``grad_norm`` at every iteration, as mmdetection logs it;
``max_norm=float("inf")`` logs it without clipping.
"""
import torch

from ._compat import require_detectron2

require_detectron2("d2imbalance.gradient_clipping")
from detectron2.engine import HookBase  # noqa: E402

__all__ = ["GradientClipping"]


class GradientClipping(HookBase):
    """Clips the global gradient norm after the backward pass (``after_backward``) and logs it."""

    def __init__(self, max_norm: float, norm_type: float = 2.0):
        if not max_norm > 0:
            raise ValueError(
                f"train.grad_clip.max_norm={max_norm!r} must be > 0 (mmdetection's recipes use 35; "
                "float('inf') logs grad_norm without clipping), or set train.grad_clip.enabled=False."
            )
        if not norm_type > 0:
            raise ValueError(
                f"train.grad_clip.norm_type={norm_type!r} must be > 0 (2.0 for the Euclidean norm, "
                "float('inf') for the largest element)."
            )
        self.max_norm = float(max_norm)
        self.norm_type = float(norm_type)
        self._clipped_this_step = False

    def after_backward(self):
        optimizer = self.trainer.optimizer
        grad_scaler = getattr(self.trainer, "grad_scaler", None)
        if grad_scaler is not None and grad_scaler.is_enabled():
            grad_scaler.unscale_(optimizer)  # clip the true gradients; the scaler's step then skips unscaling
        parameters = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        total_norm = torch.nn.utils.clip_grad_norm_(parameters, self.max_norm, self.norm_type)
        self.trainer.storage.put_scalar("grad_norm", float(total_norm))
        self._clipped_this_step = True

    def after_step(self):
        # A trainer that never calls after_backward (detectron2 before 2022, or a custom run_step) would
        # train unclipped without a word.
        if not self._clipped_this_step:
            raise RuntimeError(
                f"train.grad_clip is enabled but {type(self.trainer).__name__} did not call the hooks' "
                "after_backward, so no gradient was clipped: install a detectron2 whose trainers call "
                "after_backward (its main branch since 2022), or set train.grad_clip.enabled=False."
            )
        self._clipped_this_step = False

"""Learning-rate multipliers that fvcore lacks: Darknet's polynomial burn-in (YOLOv3).

Darknet (``get_current_rate`` in src/network.c) trains the first ``burn_in`` updates at
lr * (update / burn_in)^power, then follows its ``policy`` (yolov3.cfg: burn_in 1000, power 4, steps
400000 and 450000 with scales 0.1 and 0.1, max_batches 500200).
"""
from typing import Optional

from ._compat import require_detectron2

require_detectron2("d2imbalance.schedules")
from fvcore.common.param_scheduler import ParamScheduler  # noqa: E402

__all__ = ["PolynomialBurnIn"]


class PolynomialBurnIn(ParamScheduler):
    """``scheduler``'s value times (iteration / burn-in length)^power during the burn-in.

    detectron2's ``LRMultiplier`` passes ``where``, the fraction of training done. Two ways to give the
    burn-in length:

    - ``max_iter=None``: ``burn_in`` is a fraction of training in (0, 1], and it scales with
      ``train.max_iter``.
    - ``max_iter`` given (a config interpolates ``max_iter="${train.max_iter}"``): ``burn_in`` counts
      iterations, as Darknet's ``burn_in`` does. A schedule shortened with ``train.max_iter=...`` then keeps
      the same burn-in, or ramps the whole run if the run is shorter than the burn-in.
    """

    def __init__(self, scheduler: ParamScheduler, burn_in: float, power: float = 4.0, max_iter: Optional[int] = None):
        if max_iter is None:
            if not 0.0 < burn_in <= 1.0:
                raise ValueError(
                    f"burn_in={burn_in} must be a fraction of training in (0, 1], e.g. 1000 / max_iter; or give "
                    "max_iter (e.g. max_iter='${train.max_iter}') to count burn_in in iterations."
                )
            fraction = burn_in
        else:
            if not max_iter >= 1:
                raise ValueError(f"max_iter={max_iter} must be >= 1 (the training's iterations, train.max_iter).")
            if not burn_in > 0:
                raise ValueError(f"burn_in={burn_in} must be > 0 iterations (Darknet's yolov3.cfg: 1000).")
            fraction = burn_in / max_iter
        if power <= 0:
            raise ValueError(f"power={power} must be > 0 (Darknet's yolov3.cfg uses 4).")
        self.scheduler = scheduler
        self.burn_in_fraction = fraction
        self.power = power

    def __call__(self, where: float) -> float:
        value = self.scheduler(where)
        if where < self.burn_in_fraction:
            value *= (where / self.burn_in_fraction) ** self.power
        return value

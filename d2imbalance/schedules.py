"""Learning-rate multipliers that fvcore lacks: Darknet's polynomial burn-in (YOLOv3).

Darknet (``get_current_rate`` in src/network.c) trains the first ``burn_in`` updates at
lr * (update / burn_in)^power, then follows its ``policy`` (yolov3.cfg: burn_in 1000, power 4, steps
400000 and 450000 with scales 0.1 and 0.1, max_batches 500200).
"""
from ._compat import require_detectron2

require_detectron2("d2imbalance.schedules")
from fvcore.common.param_scheduler import ParamScheduler  # noqa: E402

__all__ = ["PolynomialBurnIn"]


class PolynomialBurnIn(ParamScheduler):
    """``scheduler``'s value times (where / burn_in)^power while where < burn_in.

    ``where`` is the fraction of training done, as detectron2's ``LRMultiplier`` passes it, so
    ``burn_in`` is a fraction of ``train.max_iter`` (yolov3.cfg: 1000 / 500200).
    """

    def __init__(self, scheduler: ParamScheduler, burn_in: float, power: float = 4.0):
        if not 0.0 < burn_in <= 1.0:
            raise ValueError(f"burn_in={burn_in} must be a fraction of training in (0, 1], e.g. 1000 / max_iter.")
        if power <= 0:
            raise ValueError(f"power={power} must be > 0 (Darknet's yolov3.cfg uses 4).")
        self.scheduler = scheduler
        self.burn_in = burn_in
        self.power = power

    def __call__(self, where: float) -> float:
        value = self.scheduler(where)
        if where < self.burn_in:
            value *= (where / self.burn_in) ** self.power
        return value

"""The residual-objectness cascade of Algorithm 1 (paper §3.2), as pure tensor functions.

Nothing here imports detectron2, so the arithmetic of the method is testable anywhere. The heads produce
per-anchor logits; the meta-architectures (``meta_arch.py``, ``rpn.py``) flatten them to ``(N, R)``
(N images, R = sum over levels of Hi*Wi*A anchors), call the functions below, and divide the returned
*sums* by their normaliser.

Notation (paper, Algorithm 1): o_0 is the objectness logit of the objectness subnet, r_t (t = 1..T) the
logit of residual subnet t, labels are 1 (foreground), 0 (background), -1 (ignored, IoU in [0.4, 0.5)).

Paper mode (:func:`residual_objectness_cascade`), for each step t = 1..T:

1. ``min_pos[t-1]`` = the minimum of o_{t-1} over the positive anchors (line 5);
2. the gated set G_t = valid anchors with o_{t-1} >= min_pos[t-1]: every positive plus the negatives
   that step t-1 did not separate from them ("hard negatives");
3. o_t = o_{t-1} + r_t on G_t; anchors outside G_t keep o_{t-1} (line 6), i.e. an anchor rejected by
   an earlier step stays rejected, as in a classifier cascade;
4. L_t = sum over G_t of BCE(sigmoid(o_t), label) (line 7);
and L_obj = sum over all valid anchors of BCE(sigmoid(o_0), label) (line 2).

Gate scope: ``gate="image"`` (default) takes the minimum over each image's positives, so an image's
gated set does not depend on which other images share its batch; ``gate="batch"`` takes one minimum over
all positives of the batch, which is what Algorithm 1 gives when run on a flattened batch.

No positives (an image without objects, or a batch without any in ``gate="batch"``): the minimum over an
empty set is +inf, so the gated set is empty and L_t = 0 for that image. The residual subnets are never
trained on background alone: they exist to separate positives from the negatives that still look like
them, and an image without positives has nothing to separate; gating every anchor instead would train
them on ~100k easy negatives, the imbalance the cascade removes. L_obj still covers all negatives of such
an image, so background-only images keep teaching the objectness subnet. The returned losses stay
connected to r_t (multiplied by an all-false mask), so every parameter receives a (zero) gradient and DDP
never sees unused parameters.

Gradient isolation (Table 2a, "Not to Objectness" wins 35.2 vs 34.5 AP): with ``detach=True`` the step t
sum uses o_{t-1}.detach(), so L_t trains only residual subnet t; the head additionally detaches the
feature its residual subnets read (see ``head.py``). ``detach=False`` restores the gradient flow into
o_0 and the earlier residuals ("To Objectness").

Authors'-code mode (:func:`summed_objectness_loss`): chenjoya/resobj@15da804 sums the logits,
o = o_0 + sum_t r_t, and applies one BCE over all valid anchors: no gating, nothing detached.

Inference (:func:`final_objectness`, :func:`fuse_scores`): there are no labels, hence no gate; the
final-step objectness o_T = o_0 + sum_t r_t is used for every anchor, and class scores are fused as
P(class) = P(class | obj) * P(obj) = sigmoid(cls) * sigmoid(o_T) (§3.1).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from d2imbalance.analysis.hyperparameters import Hyperparameter

__all__ = [
    "HYPERPARAMETERS",
    "GATE_MODES",
    "CascadeOutput",
    "residual_objectness_cascade",
    "summed_objectness_loss",
    "final_objectness",
    "fuse_scores",
    "cascade_statistics",
]

GATE_MODES = ("image", "batch")

#: What residual objectness introduces (the review's "Parameters"): the number of residual steps T.
#: The focal loss it replaces (RetinaNet) and the anchor sampling it replaces (RPN) are gone; the priors
#: of the biased initialisation are not counted (RetinaNet's prior is not either). Config key relative
#: to the model (RetinaNet-ResObj, YOLOv3-ResObj) or to the proposal generator (ResObj RPN).
HYPERPARAMETERS = (
    Hyperparameter("head.num_steps", 2, "T, residual objectness steps of the cascade (Algorithm 1; Table 2c: T=2 best)"),
)


@dataclass
class CascadeOutput:
    """Result of :func:`residual_objectness_cascade` for a batch of N images with R anchors each.

    Attributes:
        loss_obj: scalar, sum of BCE(o_0) over valid anchors (Algorithm 1, line 2); not normalised.
        loss_res: T scalars, L_t = sum of BCE(o_t) over the gated set G_t (line 7); not normalised.
        logits: T+1 tensors (N, R): o_0, ..., o_T in the training sense (o_t = o_{t-1} outside G_t).
        gates: T bool tensors (N, R): G_1, ..., G_T.
        min_pos: T tensors (N,): the logit threshold min over positives of o_{t-1} that defined G_t;
            +inf for an image without positives (for the whole batch with ``gate="batch"``).
    """

    loss_obj: Tensor
    loss_res: List[Tensor]
    logits: List[Tensor]
    gates: List[Tensor]
    min_pos: List[Tensor]


def _check_inputs(objectness: Tensor, residuals: Sequence[Tensor], labels: Tensor) -> None:
    assert objectness.dim() == 2, f"objectness must be (N, R), got {tuple(objectness.shape)}"
    assert labels.shape == objectness.shape, (
        f"labels {tuple(labels.shape)} must match objectness {tuple(objectness.shape)}"
    )
    for t, r in enumerate(residuals, start=1):
        assert r.shape == objectness.shape, (
            f"residual r_{t} {tuple(r.shape)} must match objectness {tuple(objectness.shape)}"
        )


def _bce_sum(logits: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Sum of the element-wise BCE-with-logits over ``mask``; masked-out elements contribute an exact 0
    (``where``, not multiplication, so an inf logit outside the mask cannot produce NaN)."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return torch.where(mask, loss, torch.zeros_like(loss)).sum()


def residual_objectness_cascade(
    objectness: Tensor,
    residuals: Sequence[Tensor],
    labels: Tensor,
    *,
    gate: str = "image",
    detach: bool = True,
) -> CascadeOutput:
    """Run Algorithm 1 on a batch (paper mode). See the module docstring for the exact semantics.

    Args:
        objectness: (N, R) objectness logits o_0 of the objectness subnet.
        residuals: T tensors (N, R), the residual logits r_1, ..., r_T (T = 0 gives RetinaNet-Obj).
        labels: (N, R) integer anchor labels: 1 foreground, 0 background, -1 ignored.
        gate: "image" (threshold per image, default) or "batch" (one threshold for the batch).
        detach: isolate each residual step from o_{t-1} in back-propagation (Table 2a, default True).

    Returns:
        :class:`CascadeOutput` with un-normalised loss sums.
    """
    if gate not in GATE_MODES:
        raise ValueError(f"gate={gate!r} is not one of {GATE_MODES}; use 'image' or 'batch'.")
    _check_inputs(objectness, residuals, labels)
    valid = labels >= 0
    positive = labels == 1
    target = positive.to(objectness.dtype)
    inf = torch.tensor(float("inf"), dtype=objectness.dtype, device=objectness.device)

    loss_obj = _bce_sum(objectness, target, valid)
    logits, gates, min_pos, loss_res = [objectness], [], [], []
    prev = objectness
    for r in residuals:
        prev_value = prev.detach()
        pos_logits = torch.where(positive, prev_value, inf)  # +inf outside the positives
        if gate == "image":
            threshold = pos_logits.amin(dim=1)  # (N,), +inf for an image without positives
        else:
            threshold = pos_logits.amin().expand(prev.shape[0])  # (N,), one value for the batch
        g = valid & (prev_value >= threshold[:, None])
        base = prev_value if detach else prev
        current = torch.where(g, base + r, prev)
        loss_res.append(_bce_sum(current, target, g))
        logits.append(current)
        gates.append(g)
        min_pos.append(threshold)
        prev = current
    return CascadeOutput(loss_obj=loss_obj, loss_res=loss_res, logits=logits, gates=gates, min_pos=min_pos)


def summed_objectness_loss(objectness: Tensor, residuals: Sequence[Tensor], labels: Tensor) -> Tensor:
    """Authors'-code mode: one BCE on the summed logit o_0 + sum_t r_t over all valid anchors.

    No gating and no detaching (chenjoya/resobj@15da804, which has T = 1). Returns the un-normalised sum.

    Args:
        objectness: (N, R) logits o_0; residuals: T tensors (N, R); labels: (N, R) in {1, 0, -1}.
    """
    _check_inputs(objectness, residuals, labels)
    return _bce_sum(final_objectness(objectness, residuals), (labels == 1).to(objectness.dtype), labels >= 0)


def final_objectness(objectness: Tensor, residuals: Sequence[Tensor], step: Optional[int] = None) -> Tensor:
    """Inference objectness logit o_step = o_0 + r_1 + ... + r_step for every anchor (no gate).

    Args:
        objectness: o_0, any shape (e.g. (N, R) or (Hi*Wi*A, 1)).
        residuals: r_1, ..., r_T, each the shape of ``objectness``.
        step: which step to return, 0..T; None means T (the final step, used by the detectors).
    """
    num_steps = len(residuals)
    if step is None:
        step = num_steps
    if not 0 <= step <= num_steps:
        raise ValueError(f"step={step} is outside 0..{num_steps} (the model has T={num_steps} residual steps).")
    out = objectness
    for r in residuals[:step]:
        out = out + r
    return out


def fuse_scores(objectness_logits: Tensor, class_logits: Tensor) -> Tensor:
    """P(class) = P(class | obj) * P(obj) (§3.1): sigmoid(class_logits) * sigmoid(objectness_logits).

    Args:
        objectness_logits: (..., 1) per-anchor objectness logits (broadcast over the classes).
        class_logits: (..., K) class logits.

    Returns:
        (..., K) fused probabilities. Fuse before any score threshold or top-k (pitfall 1).
    """
    return torch.sigmoid(class_logits) * torch.sigmoid(objectness_logits)


@torch.no_grad()
def cascade_statistics(output: CascadeOutput, labels: Tensor) -> Dict[str, float]:
    """Training signals of Figs. 2 and 4, as plain floats (one device-to-host copy).

    Keys (t = 0..T for scores, t = 1..T for gates):
        ``obj_pos_t{t}`` / ``obj_neg_t{t}``: mean sigmoid(o_t) over positive / negative anchors;
        ``gated_t{t}``: mean size of the gated set G_t per image;
        ``min_pos_score_t{t}``: sigmoid of the gating threshold of step t (the minimum positive
        objectness at step t-1), averaged over the images that have positives.
    A key is omitted when its set is empty (no positives in the batch), so no NaN reaches the logs.
    """
    positive = labels == 1
    negative = labels == 0
    num_images = labels.shape[0]
    names, values = [], []
    zero = labels.new_zeros((), dtype=torch.float32)
    n_pos, n_neg = positive.sum(), negative.sum()
    for t, o in enumerate(output.logits):
        p = torch.sigmoid(o.float())  # under no_grad
        names += [f"obj_pos_t{t}", f"obj_neg_t{t}"]
        values += [torch.where(positive, p, zero).sum() / n_pos.clamp(min=1),
                   torch.where(negative, p, zero).sum() / n_neg.clamp(min=1)]
    for t, (g, thr) in enumerate(zip(output.gates, output.min_pos), start=1):
        finite = torch.isfinite(thr)
        names += [f"gated_t{t}", f"min_pos_score_t{t}"]
        values += [g.sum().float() / num_images,
                   torch.where(finite, torch.sigmoid(thr.float()), zero).sum() / finite.sum().clamp(min=1)]
    *host, n_pos_host, n_neg_host = torch.stack(values + [n_pos.float(), n_neg.float()]).tolist()
    has_pos, has_neg = n_pos_host > 0, n_neg_host > 0
    stats = {}
    for name, value in zip(names, host):
        if (name.startswith(("obj_pos", "min_pos")) and not has_pos) or (name.startswith("obj_neg") and not has_neg):
            continue
        stats[name] = value
    return stats

"""Figures of the paper from our runs: objectness curves (Figs. 2 and 4) and per-step detections (Fig. 5).

The command-line wrappers are tools/plot_objectness_curves.py, tools/eval_objectness_curves.py (which
computes the curves over a dataset with :mod:`resobj.curves`) and tools/draw_resobj_steps.py. Plotting
needs only matplotlib; running a model (:func:`detections_per_step`) needs detectron2.
"""
import json
import os
import re
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "read_objectness_curves",
    "objectness_figure",
    "plot_objectness_curves",
    "detection_steps_figure",
    "detections_per_step",
    "draw_detection_steps",
]

_CURVE_KEY = re.compile(r"^(?P<prefix>.*)obj_(?P<kind>pos|neg)_t(?P<step>\d+)$")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def read_objectness_curves(
    metrics_path: str, prefix: Optional[str] = None
) -> Tuple[str, Dict[Tuple[str, int], Tuple[List[int], List[float]]]]:
    """Read the mean positive / negative objectness per step from a JSON-lines file.

    Two sources share the format (one JSON object per line with an "iteration"):

    - detectron2's metrics.json of a training run, with the training-batch scalars
      ``train/resobj/obj_pos_t{t}`` / ``obj_neg_t{t}`` of RetinaNet-ResObj (``train/rpn_resobj/`` for
      the ResObj RPN);
    - the records of :func:`resobj.curves.write_curve_records` (tools/eval_objectness_curves.py), with
      ``eval_objectness/obj_pos_t{t}`` / ``obj_neg_t{t}`` over a dataset, one line per checkpoint: the
      quantity of the paper's Figs. 2 and 4.

    Args:
        metrics_path: path of the file.
        prefix: scalar-name prefix; None picks the first one found.

    Returns:
        (prefix, {("pos" | "neg", t): (iterations, values)}).

    Raises:
        ValueError: when the file has no objectness scalars (with the prefix, if given).
    """
    curves: Dict[Tuple[str, int], Tuple[List[int], List[float]]] = defaultdict(lambda: ([], []))
    with open(metrics_path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            record = json.loads(line)
            if "iteration" not in record:
                continue
            for key, value in record.items():
                m = _CURVE_KEY.match(key)
                if m is None:
                    continue
                if prefix is None:
                    prefix = m.group("prefix")
                if m.group("prefix") != prefix:
                    continue
                its, vals = curves[(m.group("kind"), int(m.group("step")))]
                its.append(int(record["iteration"]))
                vals.append(float(value))
    if not curves:
        wanted = f" with prefix {prefix!r}" if prefix else ""
        raise ValueError(
            f"{metrics_path} has no objectness scalars (obj_pos_t*/obj_neg_t*){wanted}; it must be the "
            "metrics.json of a ResObj run (configs/ResObj/*) or the output of tools/eval_objectness_curves.py."
        )
    return prefix, dict(curves)


def objectness_figure(curves: Dict[Tuple[str, int], Tuple[List[int], List[float]]], title: str):
    """The Figs. 2/4 plot of ``curves`` (as returned by :func:`read_objectness_curves`): per step t one
    color, positives solid, negatives dashed, markers when a curve has at most 30 points (one per
    checkpoint), and a logarithmic y axis up to 1: negatives sit near 1e-3 and positives near 0.5, so a
    linear axis would flatten the negative curves onto 0. Returns the matplotlib Figure."""
    plt = _pyplot()
    fig, ax = plt.subplots()
    marker = "o" if max(len(its) for its, _ in curves.values()) <= 30 else None
    for t in sorted({t for _, t in curves}):
        for kind, style, label in (("pos", "-", "positives"), ("neg", "--", "negatives")):
            if (kind, t) in curves:
                its, vals = curves[(kind, t)]
                ax.plot(its, vals, style, color=f"C{t}", marker=marker, label=f"{label}, step {t}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean objectness score")
    ax.set_yscale("log")
    ax.set_ylim(top=1.0)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def _save(fig, output_path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    fig.savefig(output_path)
    _pyplot().close(fig)
    return output_path


def plot_objectness_curves(
    metrics_path: str, output_path: str, prefix: Optional[str] = None, title: Optional[str] = None
) -> str:
    """Plot mean objectness of positives and negatives per step t over training, as in Figs. 2 (T=0) and
    4 (T=2) of the paper (:func:`objectness_figure`), and save it as a PNG. The default title says which
    statistics are shown (training batches or an evaluated dataset), from the prefix. Returns
    ``output_path``."""
    prefix, curves = read_objectness_curves(metrics_path, prefix)
    if title is None:
        if prefix.startswith("train/"):
            title = "Average objectness on training batches (gated o_t)"
        else:
            title = "Average objectness on the evaluated dataset (o_0 + sum r_t)"
    return _save(objectness_figure(curves, title), output_path)


def detections_per_step(model, image: np.ndarray, augmentations: Sequence = ()) -> List:
    """Run a :class:`resobj.RetinaNetResObj` on one image with the objectness of each step t = 0..T.

    Args:
        model: a RetinaNetResObj (any device); put in eval mode here and restored afterwards.
        image: (H, W, 3) uint8 image in ``model.input_format``.
        augmentations: detectron2 test-time augmentations (e.g. ResizeShortestEdge) applied before the
            model; boxes come back in the coordinates of ``image``.

    Returns:
        T+1 detectron2 ``Instances`` on CPU, the detections with o_0, o_1, ..., o_T.
    """
    from d2imbalance._compat import require_detectron2

    require_detectron2("resobj.visualize.detections_per_step")
    import torch
    from detectron2.data import transforms as T

    from .meta_arch import RetinaNetResObj

    if not isinstance(model, RetinaNetResObj):
        raise ValueError(f"per-step detections need a RetinaNetResObj model, got {type(model).__name__}.")
    height, width = image.shape[:2]
    aug_input = T.AugInput(image)
    T.AugmentationList(list(augmentations))(aug_input)
    array = aug_input.image
    tensor = torch.as_tensor(np.ascontiguousarray(array.transpose(2, 0, 1)).astype("float32"))
    inputs = [{"image": tensor, "height": height, "width": width}]
    was_training, saved_step = model.training, model.test_objectness_step
    model.eval()
    results = []
    try:
        with torch.no_grad():
            for t in range(model.num_steps + 1):
                model.test_objectness_step = t
                results.append(model(inputs)[0]["instances"].to("cpu"))
    finally:
        model.test_objectness_step = saved_step
        model.train(was_training)
    return results


def detection_steps_figure(
    image_rgb: np.ndarray,
    detections: Sequence,
    *,
    score_thresh: float = 0.4,
    class_names: Optional[Sequence[str]] = None,
):
    """One panel per step with the detections scoring above ``score_thresh`` (Fig. 5 uses 0.4): a box
    and "<class> <score>" at its top-left corner. Panels are 4 inches wide, keeping the image's aspect
    (plus room for the title). Returns the matplotlib Figure.

    Args:
        image_rgb: (H, W, 3) uint8 RGB image.
        detections: T+1 ``Instances`` with pred_boxes, scores, pred_classes (from
            :func:`detections_per_step`).
        class_names: names indexed by class id; ids beyond it are shown as numbers.
    """
    plt = _pyplot()
    n = len(detections)
    height, width = image_rgb.shape[:2]
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 4.0 * height / width + 0.5), squeeze=False)
    for t, (ax, inst) in enumerate(zip(axes[0], detections)):
        ax.imshow(image_rgb)
        keep = inst.scores > score_thresh
        boxes = inst.pred_boxes.tensor[keep].tolist()
        scores = inst.scores[keep].tolist()
        classes = inst.pred_classes[keep].tolist()
        for (x0, y0, x1, y1), s, c in zip(boxes, scores, classes):
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime"))
            name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
            ax.text(x0, y0, f"{name} {s:.2f}", color="lime", va="bottom")
        ax.set_title(f"step t={t} ({len(scores)} > {score_thresh})")
        ax.axis("off")
    fig.tight_layout()
    return fig


def draw_detection_steps(
    image_rgb: np.ndarray,
    detections: Sequence,
    output_path: str,
    *,
    score_thresh: float = 0.4,
    class_names: Optional[Sequence[str]] = None,
) -> str:
    """Save :func:`detection_steps_figure` as a PNG at ``output_path`` and return the path."""
    fig = detection_steps_figure(image_rgb, detections, score_thresh=score_thresh, class_names=class_names)
    return _save(fig, output_path)

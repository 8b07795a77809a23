"""Misalignment of classification and localisation in dense detectors: the statistics of Table 1, their
proportions (Fig. 2) and the class-score vs IoU scatter (Fig. 1) of Wu et al., "Improvement of
Classification in One-Stage Detector" (arXiv 2011.10465, §1).

For each image, three populations are counted:

* ``Positive_NUM``: anchors whose largest IoU with a ground-truth box is above 0.5 (the paper's
  definition; detectron2's matcher also keeps IoU = 0.5 and low-quality matches, so its
  ``num_pos_anchors`` can differ slightly).
* ``Before NMS``: the candidates handed to NMS. Two rules pick them (``candidates=``), both per level,
  with the model's ``test_topk_candidates`` (1000) and ``test_score_thresh`` (0.05):

  - ``"paper"`` (default): MMDetection's, which the paper used: the 1000 *anchors* with the highest
    score over the classes, then every (anchor, class) pair of those anchors above 0.05. A level
    can contribute up to 1000 x K pairs; that is how Table 1 reaches 13480 candidates in one image
    with five levels.
  - ``"detectron2"``: detectron2's dense-detector inference: the (anchor, class) pairs above 0.05,
    the 1000 best *pairs* of them. These are exactly the candidates the model's own NMS sees.

  The ranking score is the class score for RetinaNet and the fused score for RetinaNet-Conf.
* ``After NMS``: what class-wise NMS at ``test_nms_thresh`` keeps, without the final cap of
  ``max_detections_per_image`` (the paper counts up to 836 boxes per image after NMS).

Rows: ``cls>t`` (the prediction's class score, t in 0.05, 0.5 ... 0.9), ``fused>t`` (the score NMS
used, models with a confidence branch only) and ``iou>t`` (largest IoU of the predicted box with any
ground-truth box of the image, class-agnostic, t in 0.5 ... 0.9). Boxes and ground truth are compared
at the network's input resolution.

Fig. 2 divides each count of a stage by the same stage's ``cls>0.05`` count (for RetinaNet-Conf, by
its ``fused>0.05`` count, the score its candidates are selected by): :func:`proportions`,
:func:`proportion_rows`, :func:`proportions_figure` / :func:`plot_proportions`. The paper's text
quotes per-image changes after NMS and their mean over the ten images; ``proportion_rows`` gives both.

The counting core (:func:`misalignment_for_image`) needs only torch and torchvision; reading a model,
a checkpoint and a dataset (:func:`collect_from_model`, :func:`run_misalignment_analysis`) needs
detectron2.
"""

import copy
import csv
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

from .._compat import require_detectron2

__all__ = [
    "CANDIDATE_RULES",
    "CLS_THRESHOLDS",
    "IOU_THRESHOLDS",
    "ImageMisalignment",
    "StagePredictions",
    "collect_from_model",
    "format_proportions",
    "format_table",
    "misalignment_for_image",
    "plot_proportions",
    "plot_scatter",
    "proportion_rows",
    "proportions",
    "proportions_figure",
    "scatter_figure",
    "run_misalignment_analysis",
    "table_rows",
    "write_report",
]

CLS_THRESHOLDS = (0.05, 0.5, 0.6, 0.7, 0.8, 0.9)  # Table 1 "cls>" rows
IOU_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)  # Table 1 "iou>" rows
POSITIVE_IOU = 0.5  # Table 1 "Positive_NUM": anchors with IoU > 0.5
STAGES = ("Before NMS", "After NMS")
CANDIDATE_RULES = ("paper", "detectron2")  # how "Before NMS" candidates are picked per level


@dataclass
class StagePredictions:
    """Predictions of one image at one stage; every array has shape (P,)."""

    cls: np.ndarray  # class score of the predicted class
    iou: np.ndarray  # largest IoU with a ground-truth box (0 without ground truth)
    fused: Optional[np.ndarray] = None  # score used for thresholding and NMS, when it is not cls

    def counts(self, prefix: str) -> Dict[Tuple[str, str], int]:
        rows = {(prefix, f"cls>{t:g}"): int((self.cls > t).sum()) for t in CLS_THRESHOLDS}
        if self.fused is not None:
            rows.update(
                {(prefix, f"fused>{t:g}"): int((self.fused > t).sum()) for t in CLS_THRESHOLDS}
            )
        rows.update({(prefix, f"iou>{t:g}"): int((self.iou > t).sum()) for t in IOU_THRESHOLDS})
        return rows


@dataclass
class ImageMisalignment:
    """Table 1 material for one image."""

    name: str
    num_anchors: int
    positive_anchors: int
    before: StagePredictions
    after: StagePredictions
    extra: Dict[str, object] = field(default_factory=dict)

    def counts(self) -> Dict[Tuple[str, str], int]:
        """{(stage, condition): count} in Table 1's row order."""
        rows = {("Positive_NUM", f"iou>{POSITIVE_IOU:g}"): self.positive_anchors}
        rows.update(self.before.counts(STAGES[0]))
        rows.update(self.after.counts(STAGES[1]))
        return rows


def _max_iou(boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    if len(gt_boxes) == 0:  # no maximum over an empty set; an image without objects has IoU 0
        return boxes.new_zeros(len(boxes))
    return box_iou(boxes.float(), gt_boxes.float()).max(dim=1).values


def _check_candidates(candidates: str) -> None:
    if candidates not in CANDIDATE_RULES:
        raise ValueError(
            f"candidates={candidates!r} must be one of {CANDIDATE_RULES}: 'paper' for Table 1's "
            "count (top anchors, then every class above the threshold), 'detectron2' for the pairs "
            "the model's own NMS sees."
        )


@torch.no_grad()
def misalignment_for_image(
    anchors: Sequence[Tensor],
    cls_scores: Sequence[Tensor],
    pred_boxes: Sequence[Tensor],
    gt_boxes: Tensor,
    *,
    fused_scores: Optional[Sequence[Tensor]] = None,
    score_thresh: float = 0.05,
    topk_candidates: int = 1000,
    nms_thresh: float = 0.5,
    candidates: str = "paper",
    name: str = "",
) -> ImageMisalignment:
    """Count Table 1's populations for one image from per-level dense predictions.

    Per level, candidates are picked by ``candidates`` (see the module docstring) from the ranking
    score (``fused_scores`` if given, else ``cls_scores``); then class-wise NMS over all levels.

    Args:
        anchors: L tensors (Rl, 4), the anchors of each level (x0, y0, x1, y1).
        cls_scores: L tensors (Rl, K), sigmoid class scores.
        pred_boxes: L tensors (Rl, 4), the boxes decoded from each anchor's deltas.
        gt_boxes: (G, 4) ground-truth boxes in the same coordinates.
        fused_scores: L tensors (Rl, K), the scores the detector ranks by, or None (RetinaNet).
        score_thresh, topk_candidates, nms_thresh: the detector's inference parameters.
        candidates: ``"paper"`` (top-k anchors, then every pair above ``score_thresh``) or
            ``"detectron2"`` (pairs above ``score_thresh``, then the top-k pairs).
        name: the image's name in reports.
    """
    _check_candidates(candidates)
    rank_scores = fused_scores if fused_scores is not None else cls_scores
    boxes, cls, fused, classes = [], [], [], []
    for level, (rank_l, cls_l, boxes_l) in enumerate(zip(rank_scores, cls_scores, pred_boxes)):
        assert rank_l.shape == cls_l.shape and len(boxes_l) == len(cls_l), (
            level,
            rank_l.shape,
            cls_l.shape,
            boxes_l.shape,
        )
        if candidates == "paper":
            top_anchors = rank_l.max(dim=1).values.topk(min(len(rank_l), topk_candidates)).indices
            pairs = (rank_l[top_anchors] > score_thresh).nonzero()  # (C, 2): row in top, class
            anchor_idx, class_idx = top_anchors[pairs[:, 0]], pairs[:, 1]
        else:
            pairs = (rank_l > score_thresh).nonzero()  # (C, 2): anchor, class
            top = rank_l[pairs[:, 0], pairs[:, 1]].topk(min(len(pairs), topk_candidates)).indices
            anchor_idx, class_idx = pairs[top].unbind(dim=1)
        boxes.append(boxes_l[anchor_idx])
        cls.append(cls_l[anchor_idx, class_idx])
        fused.append(rank_l[anchor_idx, class_idx])
        classes.append(class_idx)
    boxes, cls, fused, classes = (torch.cat(x) for x in (boxes, cls, fused, classes))
    keep = batched_nms(boxes.float(), fused.float(), classes, nms_thresh)
    ious = _max_iou(boxes, gt_boxes)
    all_anchors = torch.cat(list(anchors))
    has_fused = fused_scores is not None

    def stage(idx: Optional[Tensor]) -> StagePredictions:
        pick = (lambda x: x) if idx is None else (lambda x: x[idx])
        return StagePredictions(
            cls=pick(cls).float().cpu().numpy(),
            iou=pick(ious).float().cpu().numpy(),
            fused=pick(fused).float().cpu().numpy() if has_fused else None,
        )

    return ImageMisalignment(
        name=name,
        num_anchors=len(all_anchors),
        positive_anchors=int((_max_iou(all_anchors, gt_boxes) > POSITIVE_IOU).sum()),
        before=stage(None),
        after=stage(keep),
        extra={"candidates": candidates},
    )


def table_rows(images: Sequence[ImageMisalignment]) -> List[Tuple[str, str, List[int], int]]:
    """[(stage, condition, per-image counts, total)] in Table 1's order."""
    per_image = [im.counts() for im in images]
    keys = list(per_image[0]) if per_image else []
    return [
        (
            stage,
            cond,
            [c[(stage, cond)] for c in per_image],
            sum(c[(stage, cond)] for c in per_image),
        )
        for stage, cond in keys
    ]


def format_table(images: Sequence[ImageMisalignment]) -> str:
    """Table 1 as Markdown: one column per image and a Total column."""
    header = ["stage", "condition"] + [f"Image{i + 1}" for i in range(len(images))] + ["Total"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    last_stage = None
    for stage, cond, counts, total in table_rows(images):
        shown = stage if stage != last_stage else ""
        last_stage = stage
        lines.append(
            "| " + " | ".join([shown, cond] + [str(c) for c in counts] + [str(total)]) + " |"
        )
    return "\n".join(lines)


def _ranking_score(image: ImageMisalignment) -> str:
    return "cls" if image.before.fused is None else "fused"


def proportions(image: ImageMisalignment) -> Dict[Tuple[str, str], float]:
    """Fig. 2 for one image: {(stage, condition): count / the stage's candidates}.

    The candidates of a stage are its ``cls>0.05`` boxes, Fig. 2's denominator (e.g. Table 1's Image2
    before NMS: 79 / 2543 = 3.11 % with cls>0.5); for a model that ranks by a fused score, its
    ``fused>0.05`` boxes (its candidates are selected by that score, so every candidate is counted
    once). Conditions: ``cls>t``, ``fused>t`` (if recorded) and ``iou>t``, t in 0.5 ... 0.9. NaN for
    a stage without candidates.
    """
    counts = image.counts()
    rank = _ranking_score(image)
    scores = ("cls", "iou") if rank == "cls" else ("cls", "fused", "iou")
    out = {}
    for stage in STAGES:
        total = counts[(stage, f"{rank}>{CLS_THRESHOLDS[0]:g}")]
        for score in scores:
            for t in IOU_THRESHOLDS:
                cond = f"{score}>{t:g}"
                out[(stage, cond)] = counts[(stage, cond)] / total if total else float("nan")
    return out


def proportion_rows(
    images: Sequence[ImageMisalignment],
) -> List[Tuple[str, str, List[float], float]]:
    """[(stage, condition, per-image proportions, mean over images)] for Fig. 2, then the change
    after NMS (stage ``"After - Before"``). The mean is over images, as the paper's "on average in
    total ten images" (Table 1's iou>0.5 drops by 19.52 points, cls>0.5 by 1.09)."""
    per_image = [proportions(im) for im in images]
    keys = list(per_image[0]) if per_image else []
    rows = [(stage, cond, [p[(stage, cond)] for p in per_image]) for stage, cond in keys]
    rows += [
        ("After - Before", cond, [p[(STAGES[1], cond)] - p[(STAGES[0], cond)] for p in per_image])
        for stage, cond in keys
        if stage == STAGES[0]
    ]
    return [(stage, cond, values, _nanmean(values)) for stage, cond, values in rows]


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def format_proportions(images: Sequence[ImageMisalignment]) -> str:
    """Fig. 2's proportions as Markdown, in percent: one column per image and their mean."""
    header = ["stage", "condition"] + [f"Image{i + 1}" for i in range(len(images))] + ["Mean"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    last_stage = None
    for stage, cond, values, mean in proportion_rows(images):
        shown = stage if stage != last_stage else ""
        last_stage = stage
        cells = [f"{100 * v:.2f}" for v in values + [mean]]
        lines.append("| " + " | ".join([shown, cond] + cells) + " |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def proportions_figure(
    images: Sequence[ImageMisalignment], *, max_panels: int = 10, columns: int = 4
):
    """Fig. 2 as a matplotlib Figure: proportion of each stage's candidates above a threshold t,
    against t (0.5 ... 0.9).

    One panel per image (the first ``max_panels``) and one for the mean over all images. Blue is
    before NMS, orange after; solid lines threshold the class score, dotted lines the IoU (as in the
    paper), dash-dotted lines the fused score of a model with a confidence branch.
    """
    if not images:
        raise ValueError("The Fig. 2 plot needs at least one image.")
    plt = _pyplot()
    rows = proportion_rows(images)
    panels = [(im.name or f"Image{i + 1}", i) for i, im in enumerate(images[:max_panels])]
    panels.append((f"mean of {len(images)} images", None))
    n_rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(
        n_rows, columns, figsize=(3.2 * columns, 2.8 * n_rows), squeeze=False
    )
    styles = {"cls": "-", "iou": ":", "fused": "-."}
    colors = {STAGES[0]: "tab:blue", STAGES[1]: "tab:orange"}
    labels = {STAGES[0]: "BF_NMS", STAGES[1]: "AF_NMS"}
    for ax, (title, index) in zip(axes.flat, panels):
        for stage in STAGES:
            for score, style in styles.items():
                picked = [
                    (float(cond.split(">")[1]), values[index] if index is not None else mean)
                    for s, cond, values, mean in rows
                    if s == stage and cond.startswith(score + ">")
                ]
                if picked:
                    ts, ps = zip(*picked)
                    ax.plot(
                        ts,
                        ps,
                        style,
                        color=colors[stage],
                        marker="o",
                        ms=3,
                        label=f"{labels[stage]} {score}>t",
                    )
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("threshold t", fontsize=8)
        ax.set_ylabel("proportion of candidates", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    return fig


def plot_proportions(
    images: Sequence[ImageMisalignment], path: str, *, max_panels: int = 10, columns: int = 4
) -> str:
    """Save :func:`proportions_figure` as a PNG (100 dpi, 320 x 280 px per panel); return ``path``."""
    return _save(proportions_figure(images, max_panels=max_panels, columns=columns), path)


def scatter_figure(
    images: Sequence[ImageMisalignment], *, score: str = "cls", max_columns: int = 3
):
    """Fig. 1 as a matplotlib Figure: score (``"cls"`` or ``"fused"``) against IoU, before NMS (top
    row) and after NMS (bottom row); one column per image for the first ``max_columns`` images, plus
    one for all when there are several."""
    plt = _pyplot()
    columns = [(im.name or f"Image{i + 1}", [im]) for i, im in enumerate(images[:max_columns])]
    if len(images) > 1:
        columns.append((f"all {len(images)} images", list(images)))
    fig, axes = plt.subplots(2, len(columns), figsize=(3.2 * len(columns), 6.0), squeeze=False)
    for col, (title, group) in enumerate(columns):
        for row, stage_name in enumerate(("before", "after")):
            stages = [getattr(im, stage_name) for im in group]
            values = [getattr(s, score) for s in stages]
            if any(v is None for v in values):
                raise ValueError(
                    f"score={score!r} was not recorded: the model has no confidence branch; use 'cls'."
                )
            ax = axes[row][col]
            ax.scatter(
                np.concatenate([s.iou for s in stages]), np.concatenate(values), s=4, alpha=0.4
            )
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.axhline(0.5, color="grey", lw=0.5)
            ax.axvline(0.5, color="grey", lw=0.5)
            ax.set_title(f"{title}\n{stage_name} NMS", fontsize=8)
            ax.set_xlabel("IoU with ground truth", fontsize=8)
            ax.set_ylabel(f"{score} score", fontsize=8)
    return fig


def plot_scatter(
    images: Sequence[ImageMisalignment], path: str, *, score: str = "cls", max_columns: int = 3
) -> str:
    """Save :func:`scatter_figure` as a PNG (100 dpi, 320 x 600 px per column); return ``path``."""
    return _save(scatter_figure(images, score=score, max_columns=max_columns), path)


def write_report(
    images: Sequence[ImageMisalignment], output_dir: str, *, max_columns: int = 3
) -> Dict[str, str]:
    """Write table1.md / .csv / .json, fig2_proportions.md / .png and the scatter PNG(s); return
    their paths. Proportions go to table1.json too (null where a stage has no candidates)."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {
        "markdown": os.path.join(output_dir, "table1.md"),
        "csv": os.path.join(output_dir, "table1.csv"),
        "json": os.path.join(output_dir, "table1.json"),
        "fig2_markdown": os.path.join(output_dir, "fig2_proportions.md"),
    }
    with open(paths["markdown"], "w") as f:
        f.write(format_table(images) + "\n")
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["stage", "condition"] + [im.name for im in images] + ["total"])
        for stage, cond, counts, total in table_rows(images):
            writer.writerow([stage, cond] + counts + [total])
    with open(paths["fig2_markdown"], "w") as f:
        f.write(format_proportions(images) + "\n")

    def finite(x: float) -> Optional[float]:
        return None if np.isnan(x) else x

    with open(paths["json"], "w") as f:
        json.dump(
            {
                "images": [
                    {
                        "name": im.name,
                        "num_anchors": im.num_anchors,
                        **im.extra,
                        "counts": {f"{s}|{c}": n for (s, c), n in im.counts().items()},
                        "proportions": {
                            f"{s}|{c}": finite(p) for (s, c), p in proportions(im).items()
                        },
                    }
                    for im in images
                ],
                "total": {f"{s}|{c}": t for s, c, _, t in table_rows(images)},
                "mean_proportions": {
                    f"{s}|{c}": finite(m) for s, c, _, m in proportion_rows(images)
                },
            },
            f,
            indent=2,
        )
    if images:
        paths["fig2_plot"] = plot_proportions(
            images, os.path.join(output_dir, "fig2_proportions.png")
        )
        paths["scatter_cls"] = plot_scatter(
            images, os.path.join(output_dir, "scatter_cls_vs_iou.png"), max_columns=max_columns
        )
        if images[0].before.fused is not None:
            paths["scatter_fused"] = plot_scatter(
                images,
                os.path.join(output_dir, "scatter_fused_vs_iou.png"),
                score="fused",
                max_columns=max_columns,
            )
    return paths


@torch.no_grad()
def collect_from_model(
    model, mapped_input: dict, name: str = "", *, candidates: str = "paper"
) -> ImageMisalignment:
    """Run a detectron2 RetinaNet-style model (RetinaNet, RetinaNet-Conf, IoU-aware RetinaNet) on one
    mapped input that carries ``instances`` (ground truth at the input resolution).

    A model whose head returns a third output (the confidence) must offer ``model.fuse(cls_logits,
    conf_logits)`` as :class:`objconf.RetinaNetConf` does; its fused score then ranks the candidates.
    ``candidates``: see :func:`misalignment_for_image`; with ``"detectron2"`` the boxes after NMS are
    the model's own detections (before its ``max_detections_per_image`` cap).
    """
    for attr in ("anchor_generator", "box2box_transform", "head_in_features", "num_classes"):
        if not hasattr(model, attr):
            raise ValueError(
                f"The misalignment analysis needs a RetinaNet-style model; "
                f"{type(model).__name__} has no {attr!r}."
            )
    if "instances" not in mapped_input:
        raise ValueError(
            "The input has no 'instances': map it with a DatasetMapper built with is_train=True."
        )
    images = model.preprocess_image([mapped_input])
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    predictions = model.head(features)
    has_conf = len(predictions) == 3
    if has_conf and not hasattr(model, "fuse"):
        raise ValueError(
            f"{type(model).__name__}'s head returns a confidence but the model has no fuse() method."
        )
    dense = model._transpose_dense_predictions(
        predictions, [model.num_classes, 4] + ([1] if has_conf else [])
    )
    anchors = [a.tensor for a in model.anchor_generator(features)]
    cls_logits = [x[0] for x in dense[0]]
    pred_boxes = [model.box2box_transform.apply_deltas(d[0], a) for d, a in zip(dense[1], anchors)]
    fused = (
        [model.fuse(x.clone(), c[0]) for x, c in zip(cls_logits, dense[2])]  # fuse is in place
        if has_conf
        else None
    )
    result = misalignment_for_image(
        anchors,
        [x.sigmoid() for x in cls_logits],
        pred_boxes,
        mapped_input["instances"].gt_boxes.tensor.to(images.tensor.device),
        fused_scores=fused,
        score_thresh=model.test_score_thresh,
        topk_candidates=model.test_topk_candidates,
        nms_thresh=model.test_nms_thresh,
        candidates=candidates,
        name=name,
    )
    result.extra["num_gt"] = len(mapped_input["instances"])
    return result


def run_misalignment_analysis(
    cfg,
    *,
    checkpoint: str,
    dataset: Optional[str] = None,
    output_dir: str,
    num_images: int = 10,
    device: str = "cpu",
    max_columns: int = 3,
    candidates: str = "paper",
) -> Tuple[List[ImageMisalignment], Dict[str, str]]:
    """Table 1 and Fig. 1 for a trained checkpoint on the first ``num_images`` images with ground truth
    of a registered dataset (default: the config's test dataset), at the config's test resolution.

    Args:
        cfg: a LazyConfig with ``model`` and ``dataloader.test`` (its mapper's augmentations are used).
        checkpoint: weights to load (a path or a detectron2:// URL).
        candidates: the "Before NMS" rule, ``"paper"`` (Table 1's) or ``"detectron2"``; see
            :func:`misalignment_for_image`.
    """
    require_detectron2("the misalignment analysis")
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate
    from detectron2.data import DatasetCatalog

    from ..data.datasets import (
        prepare_datasets,
        register_coco_datasets,
    )  # registers shapes_train / shapes_val

    register_coco_datasets(cfg.train.get("datasets", []) if "train" in cfg else [])
    if dataset is None:
        dataset = cfg.dataloader.test.dataset.names
        dataset = dataset if isinstance(dataset, str) else dataset[0]
    if dataset not in DatasetCatalog.list():
        raise ValueError(
            f"Dataset {dataset!r} is not registered; registered: {sorted(DatasetCatalog.list())[:20]} ..."
        )
    prepare_datasets([dataset])
    if num_images < 1:
        raise ValueError(f"num_images={num_images} must be >= 1 (the paper shows 10).")
    _check_candidates(candidates)

    if "://" not in checkpoint and not os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f"Checkpoint {checkpoint!r} does not exist; pass the model_final.pth of a training run."
        )
    model = instantiate(cfg.model).to(device).eval()
    DetectionCheckpointer(model).load(checkpoint)
    loader_cfg = copy.deepcopy(
        cfg.dataloader
    )  # whole tree, so interpolations like ${...} still resolve
    loader_cfg.test.mapper.is_train = True  # keep the annotations; augmentations stay the test ones
    loader_cfg.test.mapper.use_instance_mask = False
    mapper = instantiate(loader_cfg.test.mapper)

    results = []
    for record in DatasetCatalog.get(dataset):
        if not any(a.get("iscrowd", 0) == 0 for a in record.get("annotations", [])):
            continue  # Table 1 is about images with objects
        mapped = mapper(copy.deepcopy(record))
        name = os.path.basename(record.get("file_name", str(record.get("image_id", len(results)))))
        results.append(collect_from_model(model, mapped, name=name, candidates=candidates))
        if len(results) == num_images:
            break
    if not results:
        raise ValueError(f"Dataset {dataset!r} has no image with a non-crowd annotation.")
    paths = write_report(results, output_dir, max_columns=max_columns)
    return results, paths
